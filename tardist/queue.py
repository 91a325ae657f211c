"""Requests for `tardist worker`: a small SQLite file next to the database, written by both sides.

The web app never runs git and never writes the main database: it records what it
wants here (sync one repository now; tell the remote heads of one) and waits for
the answer. The worker, which holds the worker lock while it runs, picks requests
up, serves them and marks them done. A request for a repository that is already
waiting its turn is merged into the waiting one (single-flight); one made while
the worker is down waits in the file until it starts.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from tardist.schema import write_transaction

Action = Literal["sync", "heads"]  # sync one repository now; tell the remote heads of one
# Why it was asked for: a webhook, an on-demand build, a fresh look at heads, the command line.
Reason = Literal["hook", "build", "fresh", "cli"]
SYNC: Final = "sync"
HEADS: Final = "heads"
HEADS_TTL = 5.0  # seconds a remote's branch heads are trusted: a flood of made-up sha7s costs one ls-remote
KEEP_DONE = 3600.0  # seconds a finished request stays (answers are read within seconds)

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    action TEXT NOT NULL,            -- 'sync' or 'heads'
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    reason TEXT NOT NULL,            -- 'hook', 'build', 'fresh' (heads) or 'cli'; 'hook', 'fresh' win a merge
    force INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    done_at REAL,
    result TEXT                      -- JSON
);
-- At most one waiting request per action and repository: the rest merge into it.
CREATE UNIQUE INDEX IF NOT EXISTS one_waiting ON requests (action, kind, name) WHERE started_at IS NULL;
CREATE INDEX IF NOT EXISTS by_done ON requests (done_at);
"""


class WorkerRunning(Exception):
    """Another `tardist worker` holds the worker lock."""


@dataclass(frozen=True)
class Request:
    """One request, as stored."""

    id: int
    action: Action
    kind: str
    name: str
    reason: Reason
    force: bool
    created_at: float
    started_at: float | None
    done_at: float | None
    result: dict[str, Any] | None

    @property
    def key(self) -> tuple[str, str, str]:
        """What single-flight merges on: the action and the repository."""
        return self.action, self.kind, self.name


class Queue:
    """The request file; one connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.worker_lock_file = path.with_name(path.name + ".worker")
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")  # the app's writers and the worker do not block each other
            conn.executescript(SCHEMA)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(self, action: Action, kind: str, name: str, reason: Reason = "cli", force: bool = False) -> int:
        """Ask for action on one repository; the id of the new request or of the waiting one it merged into."""
        row = self._conn().execute(
            "INSERT INTO requests (action, kind, name, reason, force, created_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (action, kind, name) WHERE started_at IS NULL DO UPDATE SET "
            "reason = CASE WHEN excluded.reason IN ('hook', 'fresh') THEN excluded.reason ELSE reason END, "
            "force = max(force, excluded.force) RETURNING id",
            [action, kind, name, reason, int(force), time.time()]).fetchone()
        return row[0]

    def get(self, request_id: int) -> Request | None:
        """One request, None if it is gone."""
        row = self._conn().execute("SELECT * FROM requests WHERE id = ?", [request_id]).fetchone()
        return _request(row) if row else None

    def wait(self, request_id: int, timeout: float, poll: float = 0.05) -> Request | None:
        """The request once done, or None when timeout seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.get(request_id)
            if found is None or found.done_at is not None:
                return found
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll)

    def fresh_heads(self, kind: str, name: str, ttl: float = HEADS_TTL) -> dict[str, Any] | None:
        """The newest answer of a heads request for the repository, looked at (else finished) less than ttl
        seconds ago."""
        row = self._conn().execute(
            "SELECT result FROM requests WHERE done_at >= :since AND action = 'heads' AND kind = :kind "
            "AND name = :name AND coalesce(result ->> '$.looked_at', done_at) >= :since "
            "ORDER BY coalesce(result ->> '$.looked_at', done_at) DESC LIMIT 1",
            {"kind": kind, "name": name, "since": time.time() - ttl}).fetchone()
        return json.loads(row[0]) if row else None

    # The worker's side.

    def waiting(self) -> list[Request]:
        """Requests not started yet, oldest first: at most two per repository (one_waiting), so all of them
        (with a limit, requests blocked behind a repository in hand could hide newer ones)."""
        rows = self._conn().execute("SELECT * FROM requests WHERE started_at IS NULL ORDER BY id").fetchall()
        return [_request(row) for row in rows]

    def start(self, request_id: int) -> None:
        """Mark a request taken; a newer request for the same repository now waits behind it."""
        self._conn().execute("UPDATE requests SET started_at = ? WHERE id = ?", [time.time(), request_id])

    def finish(self, request_id: int, result: dict[str, Any]) -> None:
        """Mark a request done with its answer."""
        self._conn().execute("UPDATE requests SET done_at = ?, result = ? WHERE id = ?",
                             [time.time(), json.dumps(result), request_id])

    def recover(self) -> int:
        """Put requests a killed worker had started back in line (or merge them into a waiting twin)."""
        conn = self._conn()
        with write_transaction(conn):
            unfinished = conn.execute("SELECT id FROM requests WHERE started_at IS NOT NULL "
                                      "AND done_at IS NULL").fetchall()
            for (request_id,) in unfinished:
                try:
                    conn.execute("UPDATE requests SET started_at = NULL WHERE id = ?", [request_id])
                except sqlite3.IntegrityError:  # the same was asked again meanwhile: that request serves both
                    self.finish(request_id, {"merged": True})
        return len(unfinished)

    def purge(self, older_than: float = KEEP_DONE) -> None:
        """Forget requests finished more than older_than seconds ago."""
        self._conn().execute("DELETE FROM requests WHERE done_at < ?", [time.time() - older_than])

    @contextmanager
    def worker_lock(self) -> Iterator[None]:
        """Hold the worker lock (one worker per queue), or raise WorkerRunning at once."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.worker_lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkerRunning(f"another tardist worker is running (lock {self.worker_lock_file})") from None
            yield
        finally:
            os.close(fd)

    def worker_running(self) -> bool:
        """True while a `tardist worker` serves this queue (it holds the worker lock)."""
        try:
            fd = os.open(self.worker_lock_file, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)


def _request(row: sqlite3.Row) -> Request:
    return Request(row["id"], row["action"], row["kind"], row["name"], row["reason"], bool(row["force"]),
                   row["created_at"], row["started_at"], row["done_at"],
                   json.loads(row["result"]) if row["result"] else None)
