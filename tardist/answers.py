"""The bodies of the /list, /info and Gerrit-shaped answers, as plain functions over a SQLite connection.

The Flask views and the worker's static publisher (`worker.publish`) both call
these, so a published file is byte-identical to the app's answer by
construction. No Flask here: the worker imports this module.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from tardist import queries
from tardist.layout import is_kind, is_plain_name
from tardist.settings import Settings


class Missing(Exception):
    """The asked-for kind or repository does not exist (the web app answers 404)."""


def encode(value: Any) -> bytes:
    """The one JSON encoding of every answer: compact, keys in insertion order, ASCII only."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()


def configured_kinds(settings: Settings) -> tuple[str, ...]:
    """Kinds named by the configured sources, in configuration order."""
    return tuple(dict.fromkeys(source.kind for source in settings.sources))


def all_kinds(conn: sqlite3.Connection | None, configured: Sequence[str]) -> list[str]:
    """Configured kinds, then any other kind some present repository has: the keys of /list."""
    return _kinds(configured, queries.present_names(conn) if conn else {})


def _kinds(configured: Sequence[str], names: dict[str, list[str]]) -> list[str]:
    return list(dict.fromkeys([*configured, *sorted(names)]))


def check_kind(conn: sqlite3.Connection | None, configured: Sequence[str], kind: str) -> None:
    """Raise Missing unless kind is configured or recorded."""
    if not is_kind(kind) or (kind not in configured and (conn is None or not queries.has_kind(conn, kind))):
        raise Missing(f"no such kind: {kind[:100]!r}")


def list_all(conn: sqlite3.Connection | None, configured: Sequence[str]) -> bytes:
    """GET /list: every kind with its repository names."""
    names = queries.present_names(conn) if conn else {}
    return encode({kind: names.get(kind, []) for kind in _kinds(configured, names)})


def list_kind(conn: sqlite3.Connection | None, configured: Sequence[str], kind: str) -> bytes:
    """GET /list/<kind>: the repository names of one kind."""
    check_kind(conn, configured, kind)
    return encode({kind: queries.present_names(conn).get(kind, []) if conn else []})


def info_one(conn: sqlite3.Connection | None, configured: Sequence[str], kind: str, name: str) -> bytes:
    """GET /info/<kind>/<name>: the stored answer of one repository."""
    check_kind(conn, configured, kind)
    rows = queries.info_json(conn, kind, [name]) if conn and is_plain_name(name) else []
    if not rows or rows[0][1] is None:
        raise Missing(f"no {kind} named {name[:100]!r}")
    return rows[0][1].encode()


def info_kind(conn: sqlite3.Connection | None, configured: Sequence[str], kind: str,
              names: list[str] | None = None) -> bytes:
    """GET /info/<kind>: every repository of a kind, or those of names."""
    check_kind(conn, configured, kind)
    rows = queries.info_json(conn, kind, names) if conn else []
    # The stored answers are JSON already: join them instead of decoding and encoding again.
    inner = ",".join(f"{json.dumps(name)}:{answer}" for name, answer in rows if answer is not None)
    return f'{{{json.dumps(kind)}:{{{inner}}}}}'.encode()


GERRIT_XSSI_PREFIX = b")]}'\n"  # Gerrit's first line; its clients strip the first 4 characters (and the newline)
GERRIT_ROOT = "mediawiki"  # projects are named mediawiki/<kind>/<Name>, as on Wikimedia's Gerrit


def gerrit_body(value: Any) -> bytes:
    """A Gerrit REST answer: the XSSI line, then compact JSON."""
    return GERRIT_XSSI_PREFIX + encode(value)


def built_heads(conn: sqlite3.Connection | None, branches: Sequence[str], kind: str | None = None,
                name: str | None = None) -> dict[tuple[str, str], dict[str, str]]:
    """(kind, name) -> {branch: commit} of present repositories' configured branches that have a tarball."""
    if conn is None:
        return {}
    where, params = ["r.present = 1", "b.tarball IS NOT NULL", "b.commit_sha IS NOT NULL",
                     f"b.branch IN ({', '.join('?' * len(branches))})"], list(branches)
    if kind is not None:
        where.append("r.kind = ?")
        params.append(kind)
    if name is not None:
        where.append("r.name = ?")
        params.append(name)
    rows = conn.execute("SELECT r.kind, r.name, b.branch, b.commit_sha FROM branches b JOIN repos r "
                        f"USING (kind, name) WHERE {' AND '.join(where)} ORDER BY r.kind, r.name", params)
    built: dict[tuple[str, str], dict[str, str]] = {}
    for row_kind, row_name, branch, commit in rows:
        built.setdefault((row_kind, row_name), {})[branch] = commit
    return built


def gerrit_projects(conn: sqlite3.Connection | None, branches: Sequence[str], prefix: str) -> bytes:
    """GET /gerrit/projects/?p=<prefix>: every `mediawiki/<kind>/<Name>` with a tarball that starts with prefix."""
    parts = prefix.split("/")
    # Only the kind named by the prefix is read: one SQL query, whatever the number of kinds.
    kind = parts[1] if len(parts) > 2 and parts[0] == GERRIT_ROOT and is_kind(parts[1]) else None
    found = {}
    for row_kind, row_name in built_heads(conn, branches, kind):
        project = f"{GERRIT_ROOT}/{row_kind}/{row_name}"
        if project.startswith(prefix):
            found[project] = {"id": project.replace("/", "%2F"), "state": "ACTIVE"}
    return gerrit_body(found)


def gerrit_branches(conn: sqlite3.Connection | None, branches: Sequence[str], kind: str, name: str) -> bytes:
    """GET /gerrit/projects/mediawiki%2F<kind>%2F<Name>/branches: the configured branches that have a
    tarball, at its commit, HEAD first as Gerrit lists it (its clients skip it: not refs/heads/)."""
    heads = built_heads(conn, branches, kind, name).get((kind, name)) if is_plain_name(name) else None
    if not heads:
        raise Missing(f"no project {GERRIT_ROOT}/{kind}/{name}: no {kind} named {name!r} has a tarball")
    head = [{"ref": "HEAD", "revision": branches[0]}] if branches[0] in heads else []
    return gerrit_body(head + [{"ref": f"refs/heads/{branch}", "revision": heads[branch]}
                               for branch in branches if branch in heads])
