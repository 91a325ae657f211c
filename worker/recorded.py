"""What the worker reads back of what it recorded: a repository's rows before its sync, what garbage
collection may remove, how many repositories a source listed last time. The writes are in `tardist.store`."""

from __future__ import annotations

import json

import sqlite_utils


def branches(db: sqlite_utils.Database, kind: str, name: str) -> dict[str, dict]:
    """A repository's recorded branch rows, by branch name."""
    return {row["branch"]: row for row in db["branches"].rows_where("kind = ? AND name = ?", [kind, name])}


def repo(db: sqlite_utils.Database, kind: str, name: str) -> dict | None:
    """A repository's recorded row, or None."""
    return next(db["repos"].rows_where("kind = ? AND name = ?", [kind, name]), None)


def tarballs(db: sqlite_utils.Database, kind: str, name: str) -> dict[str, dict]:
    """A repository's recorded tarball rows, current or superseded, by file name."""
    return {row["file"]: row for row in db["tarballs"].rows_where("kind = ? AND name = ?", [kind, name])}


def expired_tarballs(db: sqlite_utils.Database, cutoff: str) -> list[tuple[str, str, str]]:
    """(kind, name, file) of tarballs superseded at or before cutoff."""
    return db.execute("SELECT kind, name, file FROM tarballs WHERE superseded_at IS NOT NULL AND superseded_at <= ? "
                      "ORDER BY kind, file", [cutoff]).fetchall()


def still_expired(db: sqlite_utils.Database, kind: str, file: str, cutoff: str) -> bool:
    """True while a tarball is still superseded at or before cutoff (a sync may have reused it since)."""
    return db.execute("SELECT 1 FROM tarballs WHERE kind = ? AND file = ? AND superseded_at IS NOT NULL "
                      "AND superseded_at <= ?", [kind, file, cutoff]).fetchone() is not None


def known_tarballs(db: sqlite_utils.Database) -> set[tuple[str, str]]:
    """(kind, file) of every tarball the database knows, current or superseded."""
    return set(db.execute("SELECT kind, file FROM tarballs").fetchall())


def expired_repos(db: sqlite_utils.Database, cutoff: str) -> list[tuple[str, str]]:
    """(kind, name) of repositories that left every source at or before cutoff."""
    return db.execute("SELECT kind, name FROM repos WHERE present = 0 AND removed_at <= ? ORDER BY kind, name",
                      [cutoff]).fetchall()


def count_listed_by(db: sqlite_utils.Database, source: str) -> int:
    """How many present repositories source listed when last seen."""
    return db.execute("SELECT count(*) FROM repos WHERE present = 1 AND source = ?", [source]).fetchone()[0]


def modules_in_use(db: sqlite_utils.Database, cutoff: str) -> set[str] | None:
    """Module mirror folder names used by the trees of tarballs current or kept past cutoff.

    None when some of those tarballs were built before tardist recorded it.
    """
    used: set[str] = set()
    for (modules,) in db.execute("SELECT modules FROM tarballs WHERE superseded_at IS NULL OR superseded_at > ?",
                                 [cutoff]):
        if modules is None:
            return None  # built before tardist recorded them
        used.update(json.loads(modules))
    return used
