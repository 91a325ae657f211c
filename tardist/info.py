"""The /info answer of one repository, rendered by the worker when it records a sync.

Rendering at write time keeps the API a lookup: /info/<kind> of 2,000
repositories is a join of stored strings, not 10,000 rows decoded and encoded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tardist.settings import Settings
from tardist.wikitext import to_text


@dataclass(frozen=True)
class InfoView:
    """The settings an /info answer depends on: when they change, answers are rendered again."""

    branches: tuple[str, ...]
    tarball_url: str

    @classmethod
    def of(cls, settings: Settings) -> InfoView:
        """The view of the given settings."""
        return cls(settings.branches, settings.tarball_url)

    @property
    def key(self) -> str:
        """A string that changes whenever the view (or the shape of an answer) does."""
        return json.dumps([list(self.branches), self.tarball_url, SHAPE])


def web_url(value: Any) -> str | None:
    """value when it is an http: or https: URL with a host and nothing a browser would strip or fold, else None.

    Allowed, not denied: " JaVaScRiPt:", "java<TAB>script:" and every other scheme are refused alike.
    """
    if not isinstance(value, str) or any(ord(c) <= 0x20 or ord(c) == 0x7f for c in value):
        return None
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in ("http", "https") or not rest or rest[0] in "/?#\\":
        return None
    return value


SHAPE = 6  # bump when render_info's answer changes shape: stored answers are rendered again


def group_errors(errors: Iterable[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """(branches, reason) pairs with each reason once, in first-seen order: ten branches, one broken submodule."""
    grouped: dict[str, list[str]] = {}
    for branch, reason in errors:
        grouped.setdefault(reason, []).append(branch)
    return [(branches, reason) for reason, branches in grouped.items()]


def render_info(view: InfoView, repo: Mapping[str, Any], branch_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The /info answer of one repository from its database rows.

    Branches come in configured order; repository-level facts come from the
    first configured branch that has a manifest.
    """
    by_branch = {row["branch"]: row for row in branch_rows}
    branches: dict[str, Any] = {}
    errors: dict[str, str] = {}
    facts_from = facts_branch(view, branch_rows)
    facts = json.loads(by_branch[facts_from]["manifest"]) if facts_from else {}
    for branch in view.branches:
        row = by_branch.get(branch)
        if row is None:
            continue
        if row["error"]:
            errors[branch] = row["error"]
        if not row["tarball"]:
            continue
        manifest = json.loads(row["manifest"]) if row["manifest"] else None
        branches[branch] = {
            "commit": row["commit_sha"], "sha7": row["commit_sha"][:7], "committed_at": row["committed_at"],
            "tarball": row["tarball"], "url": f"{view.tarball_url}/{repo['kind']}/{row['tarball']}",
            "size": row["size"], "sha256": row["sha256"], "built_at": row["built_at"],
            "version": (manifest or {}).get("version"), "requires": (manifest or {}).get("requires", {}),
            "manifest_errors": json.loads(row["manifest_errors"] or "[]"),
            "warnings": json.loads(row["warnings"] or "[]"),
            "vendor": json.loads(row["vendor"] or "[]"),
        }
    retry_at = {row["branch"]: row.get("retry_at") for row in branch_rows}
    failures = [{"branches": [], "error": repo["error"], "retry_at": repo.get("retry_at")}] if repo["error"] else []
    failures += [{"branches": branches, "error": reason, "retry_at": min(filter(None, map(retry_at.get, branches)),
                                                                          default=None)}
                 for branches, reason in group_errors(errors.items())]
    return {
        "name": repo["name"], "kind": repo["kind"], "repository": repo["repository"],
        "description": facts.get("description"), "description_text": _text(facts.get("description")),
        "license": facts.get("license"), "url": web_url(facts.get("url")),
        "authors": facts.get("authors", []), "type": facts.get("type"),
        "branches": branches, "errors": errors, "error": repo["error"],
        "failures": failures,
    }


def _text(description: Any) -> str | None:
    return to_text(description) if isinstance(description, str) else None


def facts_branch(view: InfoView, branch_rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The first configured branch with a tarball and a manifest: the one repository-level facts come from."""
    by_branch = {row["branch"]: row for row in branch_rows}
    for branch in view.branches:
        row = by_branch.get(branch)
        if row is not None and row["tarball"] and row["manifest"]:
            return branch
    return None


_DESCRIPTION_KEY = ',"description":'
_TEXT_KEY = ',"description_text":'
_DECODER = json.JSONDecoder()


def localize(info: str, found: tuple[str, str] | None) -> str:
    """A stored /info answer with description (and description_text) replaced by found = (lang, text),
    plus description_lang.

    Spliced into the stored string: only the description value is decoded. Without a
    translation the English description stays and description_lang says "en".
    """
    start = info.index(_DESCRIPTION_KEY) + len(_DESCRIPTION_KEY)  # the first one is the top-level key
    english, end = _DECODER.raw_decode(info, start)
    if found is None:
        lang, text = ("en" if english is not None else None), english
    else:
        lang, text = found
    rest = info[end:]
    if found is not None and rest.startswith(_TEXT_KEY):  # render_info puts it right after description
        _old, text_end = _DECODER.raw_decode(rest, len(_TEXT_KEY))
        rest = f"{_TEXT_KEY}{json.dumps(_text(text))}{rest[text_end:]}"
    return f"{info[:start]}{json.dumps(text)},\"description_lang\":{json.dumps(lang)}{rest}"
