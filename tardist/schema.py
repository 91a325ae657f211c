"""The database schema: numbered migrations, the one way it changes, and opening it.

The worker opens it for writing (creating and migrating it); the web app and
`tardist status` open it read-only. WAL mode lets both run at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

BUSY_TIMEOUT = 60  # seconds a writer waits for the write lock (the database_timeout setting)


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


def _v4(db: sqlite_utils.Database) -> None:
    """Which source lists each repository (an emptied source keeps its own), and which module
    mirrors each tarball's tree used (gc keeps those)."""
    db["repos"].add_column("source", str)
    db["tarballs"].add_column("modules", str)


def _v5(db: sqlite_utils.Database) -> None:
    """Retries with backoff: how often a branch (or a repository's fetch) failed in a row, and when to retry."""
    for table in ("branches", "repos"):
        db[table].add_column("failures", int)
        db[table].add_column("retry_at", str)
    db["repos"].add_column("retry_heads", str)  # {branch: commit} the failed fetch wanted, as JSON


def _v6(db: sqlite_utils.Database) -> None:
    """Descriptions in every language a branch translates, and which branch gives the repository facts."""
    db["descriptions"].create({"kind": str, "name": str, "branch": str, "lang": str, "description": str},
                              pk=("kind", "name", "branch", "lang"))
    db["descriptions"].create_index(["kind", "lang"])
    db["repos"].add_column("facts_branch", str)


def _v7(db: sqlite_utils.Database) -> None:
    """Download counts per day, the anonymised requests behind them, and how far each log was read."""
    db["downloads"].create({"kind": str, "name": str, "branch": str, "day": str, "count": int},
                           pk=("kind", "name", "branch", "day"))
    db["downloads"].create_index(["kind", "day"])
    db["requests"].create({"day": str, "time": str, "path": str, "status": int, "bytes": int,
                           "client": str, "agent": str})
    db["requests"].create_index(["day"])
    db["log_files"].create({"fingerprint": str, "offset": int, "lines": int, "skipped": int, "path": str,
                            "read_at": str}, pk="fingerprint")
    db["stats_salts"].create({"day": str, "salt": str}, pk="day")


def _v8(db: sqlite_utils.Database) -> None:
    """The packages composer bundled in vendor/, per branch and per tarball (reused without composer)."""
    db["branches"].add_column("vendor", str)
    db["tarballs"].add_column("vendor", str)
    db.execute("DELETE FROM meta WHERE key = 'info_view'")  # render /info again: it gains "vendor"


MIGRATIONS = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8]


@contextmanager
def write_transaction(db: sqlite_utils.Database | sqlite3.Connection) -> Iterator[None]:
    """One transaction that holds SQLite's write lock from its first statement (BEGIN IMMEDIATE).

    Every writer uses it. A deferred BEGIN that reads and then writes gets "database is locked"
    at once, whatever the busy timeout, when another process commits in between; asking for the
    write lock first makes the writer wait its turn for up to the busy timeout instead. Inside
    another write_transaction, it is a savepoint of that one.
    """
    conn = db.conn if isinstance(db, sqlite_utils.Database) else db
    if conn.in_transaction:
        conn.execute("SAVEPOINT nested_write")
        try:
            yield
            conn.execute("RELEASE nested_write")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO nested_write")
                conn.execute("RELEASE nested_write")
            raise
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def migrate(db: sqlite_utils.Database) -> None:
    """Bring the schema up to date: the one way the schema changes."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    while version != len(MIGRATIONS):
        if version > len(MIGRATIONS):
            raise SchemaTooNew(_too_new(version))
        with write_transaction(db):
            # Read again under the write lock: another process may have migrated meanwhile.
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < len(MIGRATIONS):
                MIGRATIONS[version](db)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")


def open_writer(path: Path, timeout: float = BUSY_TIMEOUT) -> sqlite_utils.Database:
    """Open (creating if needed) the database for the worker, migrated, in WAL mode.

    Every write waits up to timeout seconds for another writer to finish (write_transaction).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Shared by a run's sync threads, each recording its repository under the run's lock.
    conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
    db = sqlite_utils.Database(conn)
    db.enable_wal()
    db.execute("PRAGMA synchronous = NORMAL")
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


class SchemaError(Exception):
    """The database's schema is not the one this tardist reads and writes."""


class SchemaOutdated(SchemaError):
    """The database was made by an older tardist and not migrated yet."""


class SchemaTooNew(SchemaError):
    """The database was made by a newer tardist; this one would misread it, or break it."""


def _too_new(version: int) -> str:
    return (f"the database has schema version {version}, newer than this tardist knows ({len(MIGRATIONS)}): "
            "it was made by a newer tardist; upgrade this one (a downgrade needs a backup of the database "
            "from before the upgrade)")


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
    if version > len(MIGRATIONS):
        conn.close()
        raise SchemaTooNew(_too_new(version))
    return conn
