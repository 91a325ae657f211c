"""Read-only database access for the web app, with answers cached until the data changes.

Each thread keeps one read-only connection. SQLite's `PRAGMA data_version`
changes whenever another connection (the worker) commits, so cached answers
are dropped exactly when a sync has recorded something new.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.exceptions import ServiceUnavailable

from tardist import schema
from tardist.answers import encode

MAX_CACHED = 4096
# Bytes too: distinct ?names= lists can each be megabytes, and there are endless such lists.
MAX_CACHED_BYTES = 64 * 1024 * 1024


class Answer:
    """A computed JSON body and its ETag; bytes are taken as JSON already encoded."""

    __slots__ = ("body", "etag")

    def __init__(self, value: Any) -> None:
        self.body = value if isinstance(value, bytes) else encode(value)
        self.etag = hashlib.blake2b(self.body, digest_size=12).hexdigest()


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file, None when it is absent: changes when the file is replaced."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


class Reader:
    """Per-thread read-only connections and answer caches."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection | None:
        """This thread's read-only connection; None while no sync has created the database."""
        conn = getattr(self._local, "conn", None)
        identity = _file_identity(self.database)
        if conn is not None and identity != self._local.identity:
            conn.close()  # the file was replaced (restored, recreated): read the new one
            conn = self._local.conn = None
        if conn is None:
            try:
                conn = schema.open_reader(self.database)
            except schema.SchemaError as exc:
                raise ServiceUnavailable(str(exc)) from None
            if conn is None:
                return None
            self._local.conn = conn
            self._local.identity = identity
            self._local.version = None
            self._local.cache = OrderedDict()
            self._local.cached_bytes = 0
        return conn

    def answer(self, key: str, compute: Callable[[sqlite3.Connection | None], Any]) -> Answer:
        """The answer for key, computed from one consistent snapshot of the database.

        ``compute(conn)`` gets None while no sync has created the database yet.
        """
        conn = self.connection()
        if conn is None:
            return Answer(compute(None))
        cache: OrderedDict[str, Answer] = self._local.cache
        conn.execute("BEGIN")
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._local.version:
                cache.clear()
                self._local.cached_bytes = 0
                self._local.version = version
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                return hit
            answer = Answer(compute(conn))
        finally:
            conn.execute("COMMIT")
        cache[key] = answer
        self._local.cached_bytes += len(answer.body)
        while len(cache) > MAX_CACHED or self._local.cached_bytes > MAX_CACHED_BYTES:
            self._local.cached_bytes -= len(cache.popitem(last=False)[1].body)
        return answer
