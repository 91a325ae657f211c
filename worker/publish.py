"""The static API: the web app's /list and /info answers written as files under published/.

Any web server or CDN can then serve the API (deploy/nginx.conf, deploy/nginx-static.conf).
Each file holds exactly the bytes the app answers for its URL, because both come from
`tardist.answers`. Files are written atomically and only when their content changed,
so a file's mtime (and with it nginx's ETag) moves only when its answer does.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from tardist import answers, queries
from tardist.layout import TEMP_PREFIX, atomic_write, fsync_dir, publish_lock_file
from tardist.schema import write_transaction
from tardist.settings import Settings
from worker.checksums import checksums_path, write_checksums
from worker.lock import file_lock

log = logging.getLogger("tardist.publish")
WRITERS = 8  # files written at once: the disk can commit several fsyncs together


@dataclass(frozen=True)
class Where:
    """What one answer is computed from: a database snapshot, the configured kinds, a kind, a name."""

    conn: sqlite3.Connection
    configured: tuple[str, ...]
    branches: tuple[str, ...]
    kind: str = ""
    name: str = ""


@dataclass(frozen=True)
class Published:
    """One published answer: URL and file templates ({kind}, {name}: one per kind or repository), and its body."""

    url: str
    file: str
    body: Callable[[Where], bytes]

    @property
    def per_repository(self) -> bool:
        """True when there is one file per repository."""
        return "{name}" in self.file

    @property
    def per_kind(self) -> bool:
        """True when there is one file per kind (and not per repository)."""
        return "{kind}" in self.file and not self.per_repository


# Every answer published/ holds, one line each. `body` raises answers.Missing when the
# answer is a 404 (a removed repository): its file is removed.
PUBLISHED: tuple[Published, ...] = (
    Published("/list", "list.json", lambda at: answers.list_all(at.conn, at.configured)),
    Published("/list/{kind}", "list/{kind}.json", lambda at: answers.list_kind(at.conn, at.configured, at.kind)),
    Published("/info/{kind}", "info/{kind}.json", lambda at: answers.info_kind(at.conn, at.configured, at.kind)),
    Published("/info/{kind}/{name}", "info/{kind}/{name}.json",
              lambda at: answers.info_one(at.conn, at.configured, at.kind, at.name)),
    Published("/gerrit/projects/?p=mediawiki/{kind}/", "gerrit/projects/mediawiki/{kind}.json",
              lambda at: answers.gerrit_projects(at.conn, at.branches, f"mediawiki/{at.kind}/")),
    Published("/gerrit/projects/mediawiki%2F{kind}%2F{name}/branches",
              "gerrit/projects/mediawiki/{kind}/{name}/branches.json",
              lambda at: answers.gerrit_branches(at.conn, at.branches, at.kind, at.name)),
)


def publish(settings: Settings, db: sqlite_utils.Database,
            changed: Iterable[tuple[str, str]] | None = None) -> dict[str, int | float]:
    """Bring published/ up to date with the database; return what was written and removed.

    ``changed`` names the (kind, name) repositories recorded since the last publish
    (None: check every file, and remove any file that is no answer). Files of the whole
    list and of each kind are always checked. Safe to call from several threads and
    processes: publishes take turns, each from one consistent snapshot.
    """
    report: dict[str, int | float] = {"written": 0, "removed": 0, "unchanged": 0, "seconds": 0.0}
    if settings.published is None:
        return report
    started = time.monotonic()
    with _publish_lock(settings):
        # A folder not there yet (publishing just turned on) or a failed publish: check every file.
        full = changed is None or not settings.published.is_dir() or _failed_before(db)
        try:
            with _snapshot(db.conn) as conn:
                _publish(settings, conn, None if full else set(changed or ()), report)
            report["checksums"] = write_checksums(settings, db)["versions"]
        except BaseException:
            _set_failed(db, True)  # the next publish checks everything again
            raise
        if full:
            _set_failed(db, False)
    report["seconds"] = round(time.monotonic() - started, 3)
    log.debug("published: %s", report)
    return report


def published_files(settings: Settings, conn: sqlite3.Connection) -> dict[str, tuple[str, bytes]]:
    """Every file published/ should hold now: relative path -> (URL, body)."""
    configured = answers.configured_kinds(settings)
    kinds = answers.all_kinds(conn, configured)
    names = queries.present_names(conn)
    files: dict[str, tuple[str, bytes]] = {}
    for entry in PUBLISHED:
        for kind, name in _instances(entry, kinds, names):
            try:
                body = entry.body(Where(conn, configured, settings.branches, kind, name))
            except answers.Missing:  # an answer that is a 404 has no file
                continue
            files[entry.file.format(kind=kind, name=name)] = (entry.url.format(kind=kind, name=name), body)
    return files


def _instances(entry: Published, kinds: list[str], names: dict[str, list[str]]) -> list[tuple[str, str]]:
    if entry.per_repository:
        return [(kind, name) for kind in kinds for name in names.get(kind, [])]
    if entry.per_kind:
        return [(kind, "") for kind in kinds]
    return [("", "")]


def _publish(settings: Settings, conn: sqlite3.Connection, changed: set[tuple[str, str]] | None,
             report: dict) -> None:
    root = settings.published
    assert root is not None
    touched: set[Path] = set()
    if changed is None:
        wanted = {root / relative: body for relative, (_url, body) in published_files(settings, conn).items()}
        _write_all(wanted, report, touched)
        for path in _files_under(root):
            if path not in wanted and not checksums_path(settings, path):
                _remove(root, path, report, touched)
    else:
        configured = answers.configured_kinds(settings)
        kinds = answers.all_kinds(conn, configured)
        wanted = {}
        for entry in PUBLISHED:
            if entry.per_repository:
                instances = sorted(changed)
            else:
                instances = _instances(entry, kinds, {})
                if entry.per_kind:
                    _remove_other_kinds(root, entry, kinds, report, touched)
            for kind, name in instances:
                path = root / entry.file.format(kind=kind, name=name)
                try:
                    wanted[path] = entry.body(Where(conn, configured, settings.branches, kind, name))
                except answers.Missing:
                    _remove(root, path, report, touched)
        _write_all(wanted, report, touched)
    for folder in touched:  # the renames and unlinks themselves survive a crash
        if folder.is_dir():
            fsync_dir(folder)


def _write_all(wanted: dict[Path, bytes], report: dict, touched: set[Path]) -> None:
    """Write every changed file; in parallel, because an fsync mostly waits for the disk."""
    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="publish") as pool:
        written = pool.map(_write_if_changed, wanted, wanted.values())
        for path, was_written in zip(wanted, written):
            report["written" if was_written else "unchanged"] += 1
            if was_written:
                touched.add(path.parent)


def _write_if_changed(path: Path, body: bytes) -> bool:
    """Write body to path atomically, unless path holds exactly body already; True if written."""
    try:
        if path.stat().st_size == len(body) and path.read_bytes() == body:
            return False
    except FileNotFoundError:
        pass
    # publishes take turns (the pid in the temporary name suffices); the folders are fsynced once, at the end
    with atomic_write(path, sync_folder=False) as out:
        out.write(body)
    return True


def _remove(root: Path, path: Path, report: dict, touched: set[Path]) -> None:
    """Remove a file that is no answer any more, and the folders below root it leaves empty."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    report["removed"] += 1
    folder = path.parent
    while folder != root and not any(folder.iterdir()):
        folder.rmdir()
        touched.discard(folder)
        folder = folder.parent
    touched.add(folder)


def _remove_other_kinds(root: Path, entry: Published, kinds: list[str], report: dict, touched: set[Path]) -> None:
    """Remove the per-kind files of kinds that exist no more (a source left the configuration)."""
    pattern = re.compile(re.escape(entry.file).replace(r"\{kind\}", "(?P<kind>[^/]+)"))
    for path in root.glob(entry.file.format(kind="*", name="*")):
        match = pattern.fullmatch(path.relative_to(root).as_posix())
        if match and match["kind"] not in kinds and not path.name.startswith(TEMP_PREFIX):
            _remove(root, path, report, touched)


def _files_under(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [Path(folder) / file for folder, _dirs, files in os.walk(root) for file in files]


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction: every file of a publish shows the same moment."""
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if own:
            conn.execute("COMMIT")


def _publish_lock(settings: Settings) -> AbstractContextManager[None]:
    """Publishes take turns, so an older snapshot never overwrites a newer one's files."""
    return file_lock(publish_lock_file(settings))


def _failed_before(db: sqlite_utils.Database) -> bool:
    return db.execute("SELECT 1 FROM meta WHERE key = 'publish_failed'").fetchone() is not None


def _set_failed(db: sqlite_utils.Database, failed: bool) -> None:
    if failed == _failed_before(db):
        return
    with write_transaction(db):
        if failed:
            db["meta"].upsert({"key": "publish_failed", "value": "1"}, pk="key")
        else:
            db.execute("DELETE FROM meta WHERE key = 'publish_failed'")
