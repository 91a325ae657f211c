"""The bodies of the /list and /info answers, as plain functions over a SQLite connection.

The Flask views and the worker's static publisher (`worker.publish`) both call
these, so a published file is byte-identical to the app's answer by
construction. No Flask here: the worker imports this module.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Sequence

from tardist import queries
from tardist.settings import Settings, is_kind, is_plain_name


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
