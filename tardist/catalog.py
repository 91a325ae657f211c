"""Which configured repository a name, a clone URL or a Gerrit project means, without git or network.

Shared by the web app (to answer 404 before anything is queued) and the worker
(to sync one repository without listing every source). List and directory
sources are looked at directly; a Gerrit source's repositories are known once a
full sync has listed them (the web app must not call Gerrit).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from tardist.layout import is_kind, is_plain_name
from tardist.settings import Settings
from tardist.source_config import Source


class Executes(Protocol):
    """A sqlite3 connection or a sqlite_utils Database."""

    def execute(self, sql: str, parameters: Any = ...) -> Any: ...


def find(settings: Settings, conn: Executes | None, kind: str, name: str) -> tuple[str, Source] | None:
    """The clone URL of repository kind/name and the source that gives it (the first one wins), or None."""
    if not is_kind(kind) or not is_plain_name(name):
        return None
    for source in settings.sources:
        if source.kind != kind:
            continue
        if source.type == "list" and name in source.repos:
            return source.repos[name], source
        if source.type == "directory" and source.path is not None:
            for folder in (source.path / name, source.path / f"{name}.git"):  # the order list_repos sees them in
                if (folder / "HEAD").is_file() or (folder / ".git").exists():
                    return str(folder), source
        if source.type == "gerrit" and conn is not None:
            url = f"{source.url}/{source.prefix}{name}"
            if _listed_by(conn, kind, name, source.key, url):
                return url, source
    return None


def _listed_by(conn: Executes, kind: str, name: str, source: str, url: str) -> bool:
    """True when the last full sync found kind/name in this source (a Gerrit listing): by the source's
    key, or by its clone URL for rows recorded before tardist recorded sources."""
    return conn.execute("SELECT 1 FROM repos WHERE kind = ? AND name = ? AND present = 1 "
                        "AND (source = ? OR (source IS NULL AND repository = ?))",
                        [kind, name, source, url]).fetchone() is not None


def normalize_url(url: str) -> str:
    """A clone URL reduced to what tells repositories apart: no credentials, no .git, no trailing /."""
    url = url.strip().rstrip("/").removesuffix(".git")
    if "://" not in url:
        return url  # a path, or scp-like user@host:path
    parts = urlsplit(url)
    host = (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme.lower()}://{host}{parts.path.rstrip('/')}"


def by_url(settings: Settings, conn: Executes | None, urls: list[str]) -> tuple[str, str] | None:
    """(kind, name) of the configured repository cloned from any of urls, or None."""
    wanted = {normalize_url(url) for url in urls if isinstance(url, str) and url}
    if not wanted:
        return None
    for source in settings.sources:
        for name, url in source.repos.items():
            if normalize_url(url) in wanted:
                return source.kind, name
    if conn is not None:
        for kind, name, url in conn.execute("SELECT kind, name, repository FROM repos WHERE present = 1"):
            if url is not None and normalize_url(url) in wanted:  # None: a directory source's, shown to nobody
                return kind, name
    for url in sorted(wanted):  # a directory source's repository not synced yet
        path = Path(url)
        name = path.name
        for source in settings.sources:
            if source.type == "directory" and path.parent == source.path and find(settings, conn, source.kind, name):
                return source.kind, name
    return None


def by_project(settings: Settings, conn: Executes | None, project: str) -> tuple[str, str] | None:
    """(kind, name) of a Gerrit project `.../<kind>/<Name>` (e.g. mediawiki/extensions/Cite), or None."""
    parts = project.strip("/").split("/")
    if len(parts) < 2:
        return None
    kind, name = parts[-2], parts[-1]
    return (kind, name) if find(settings, conn, kind, name) else None


SCP_HOST_RE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^@/:]+):")  # user@host:path, as git reads it


def remote_host(url: str) -> str | None:
    """The host (and port) a clone URL reaches over the network; None for a path on this machine."""
    if "://" not in url:
        match = SCP_HOST_RE.match(url)
        return match["host"].lower() if match else None
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        return None
    try:
        port = parts.port
    except ValueError:  # git will say what is wrong with it; the whole netloc still names one place
        return parts.netloc.lower()
    return (parts.hostname or "").lower() + (f":{port}" if port else "")
