"""The database schema: numbered migrations, the one way it changes, and opening it.

The worker opens it for writing (creating and migrating it); the web app and
`tardist status` open it read-only. WAL mode lets both run at once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils


def _v1(db: sqlite_utils.Database) -> None:
    db["repos"].create({
        "kind": str, "name": str, "repository": str, "present": int, "removed_at": str,
        "checked_at": str, "error": str,
    }, pk=("kind", "name"), not_null={"kind", "name"})
    db["branches"].create({
        "kind": str, "name": str, "branch": str, "commit_sha": str, "committed_at": str,
        "tarball": str, "size": int, "sha256": str, "built_at": str, "manifest": str,
        "manifest_errors": str, "warnings": str, "error": str, "error_commit": str,
    }, pk=("kind", "name", "branch"))
    db["tarballs"].create({
        "kind": str, "file": str, "name": str, "branch": str, "commit_sha": str,
        "sha256": str, "size": int, "built_at": str, "superseded_at": str,
    }, pk=("kind", "file"))
    db["tarballs"].create_index(["superseded_at"])
    db["runs"].create({
        "id": int, "started_at": str, "finished_at": str, "status": str, "options": str,
        "built": int, "unchanged": int, "failed": int, "seconds": float,
    }, pk="id")


def _v2(db: sqlite_utils.Database) -> None:
    """Rendered /info answers, the settings they were rendered for, and a faster supersede."""
    db["repos"].add_column("info", str)
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["tarballs"].create_index(["kind", "name", "branch"])


def _v3(db: sqlite_utils.Database) -> None:
    """What a run warned about (repositories a source skipped), for `tardist status`."""
    db["runs"].add_column("warnings", str)


def _vendor(db: sqlite_utils.Database) -> None:
    """The packages composer bundled in vendor/, per branch and per tarball (reused without composer)."""
    db["branches"].add_column("vendor", str)
    db["tarballs"].add_column("vendor", str)
    db.execute("DELETE FROM meta WHERE key = 'info_view'")  # render /info again: it gains "vendor"


MIGRATIONS = [_v1, _v2, _v3, _vendor]


def migrate(db: sqlite_utils.Database) -> None:
    """Bring the schema up to date: the one way the schema changes."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        with db.atomic():
            step(db)
            db.execute(f"PRAGMA user_version = {number}")


def open_writer(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) the database for the worker, migrated, in WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=60)
    db = sqlite_utils.Database(conn)
    db.enable_wal()
    db.execute("PRAGMA synchronous = NORMAL")
    migrate(db)
    return db


class SchemaOutdated(Exception):
    """The database was made by an older tardist and not migrated yet."""


def open_reader(path: Path) -> sqlite3.Connection | None:
    """Open the database read-only for the web app; None while no sync has created it."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < len(MIGRATIONS):
        conn.close()
        if version == 0:
            return None  # being created by the first sync
        raise SchemaOutdated(f"the database has schema version {version}, this tardist needs "
                             f"{len(MIGRATIONS)}: run `tardist init-db`")
    return conn
