"""A `gerrit` source's one listing request: its projects and, with `b=`, their snapshot-branch heads.

Gerrit's `GET /projects/?p=<prefix>&b=<branch>&b=<branch>...` answers a JSON map of
project name to ProjectInfo, after the `)]}'` line; with `b=` each ProjectInfo has
`branches`: {branch: sha1} for the asked branches the project has (Gerrit then leaves
out projects that have none of them: they have nothing to build). A Gerrit that pages
its answer marks the last project of a page `_more_projects`; the next page is asked
for with `S=<projects so far>`.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tardist.settings import Settings
from tardist.source_config import Source

GERRIT_XSSI_PREFIX = ")]}'"
SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
MAX_PAGES = 1000  # a Gerrit that says "more" forever must not keep the run listing forever


class ListingError(Exception):
    """The Gerrit could not be listed, or did not answer with a project listing."""


def list_projects(settings: Settings, source: Source) -> dict[str, dict[str, Any]]:
    """Every project under the source's prefix, by full name, each page of the listing asked for in turn."""
    projects: dict[str, dict[str, Any]] = {}
    for _ in range(MAX_PAGES):
        page = _page(settings, source, len(projects))
        before = len(projects)
        projects.update(page)
        more = any(isinstance(facts, dict) and facts.get("_more_projects") is True for facts in page.values())
        if not more or len(projects) == before:  # a page that adds nothing would be asked for again and again
            return projects
    raise ListingError(f"{source.url}/projects/ still had more projects after {MAX_PAGES} pages")


def listed_heads(facts: Any, branches: tuple[str, ...]) -> dict[str, str] | None:
    """The snapshot-branch heads a ProjectInfo gives, or None when it gives none that can be trusted.

    An answer without `branches` (a Gerrit or a proxy that dropped `b=`) tells nothing:
    None sends the repository to `ls-remote` as before.
    """
    listed = facts.get("branches") if isinstance(facts, dict) else None
    if not isinstance(listed, dict):
        return None
    heads = {}
    for branch in branches:
        sha = listed.get(branch)
        if sha is None:
            continue
        if not isinstance(sha, str) or not SHA_RE.match(sha):
            return None
        heads[branch] = sha
    return heads


def _page(settings: Settings, source: Source, skip: int) -> dict[str, Any]:
    query = [("p", source.prefix), *(("b", branch) for branch in settings.branches)]
    if skip:
        query.append(("S", str(skip)))
    address = f"{source.url}/projects/?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(address, timeout=settings.git_timeout) as answer:
            body = answer.read().decode("utf-8")
        projects = json.loads(body.removeprefix(GERRIT_XSSI_PREFIX))
    except (urllib.error.URLError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise ListingError(f"cannot list Gerrit projects at {address}: {exc}") from None
    if not isinstance(projects, dict):
        raise ListingError(f"{address} did not answer with a Gerrit project listing")
    return projects
