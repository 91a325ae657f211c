"""One repository's sync: its branch heads, its mirror, then a build of each branch that moved.

`sync_repo` decides and fetches; `worker.build.build_branch` builds one branch; `sync_locked`
does it under the repository's lock and records the result through a `Recorder`. Whole runs
are `worker.run`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass, field

import sqlite_utils

from tardist import store
from tardist.backoff import branch_waits, fetch_waits
from tardist.info import InfoView
from tardist.layout import mirror_path, repo_lock_path, tarball_name, tarball_path
from tardist.records import BranchRecord, RepoRecord
from tardist.settings import Settings
from tardist.timestamps import utcnow
from worker import recorded
from worker.build import build_branch
from worker.git import GitError, ObjectReader
from worker.lock import file_lock
from worker.mirror import branch_head, delete_branches, fetch_branches, has_commit, remote_heads, repair_mirror
from worker.sources import Repo

log = logging.getLogger("tardist.sync")


@dataclass
class Known:
    """What the database holds of one repository before its sync."""

    branches: dict[str, dict] = field(default_factory=dict)  # branch rows, by branch name
    tarballs: dict[str, dict] = field(default_factory=dict)  # tarball rows (current or superseded), by file
    repo: dict | None = None  # its repository row


@dataclass
class Recorder:
    """Where syncs are recorded: the writer connection (shared by a run's threads, under lock) and the
    settings /info answers are rendered with."""

    db: sqlite_utils.Database
    view: InfoView
    lock: threading.Lock = field(default_factory=threading.Lock)

    def known(self, kind: str, name: str) -> Known:
        """What is recorded of one repository now."""
        with self.lock:
            return Known(recorded.branches(self.db, kind, name), recorded.tarballs(self.db, kind, name),
                         recorded.repo(self.db, kind, name))

    def save(self, record: RepoRecord) -> None:
        """Record one repository's sync in one transaction."""
        with self.lock:
            store.save_repo(self.db, record, self.view)


def sync_repo(settings: Settings, repo: Repo, known: Known, force: bool = False, retry: bool = False) -> RepoRecord:
    """Bring one repository's mirror and tarballs up to date; report what happened.

    ``known`` is what the database holds of it. What failed before at the same commit is
    not tried again before its retry time, unless ``retry`` or ``force``. Nothing here
    writes to the database: the caller records the result in one transaction.
    """
    config = settings.git_config
    retry = retry or force
    now = utcnow()
    record = RepoRecord(repo.kind, repo.name, repo.public_url, source=repo.source)
    mirror = mirror_path(settings, repo.kind, repo.name)
    try:
        # A head check is one short round trip: a remote that never answers costs heads_timeout, not git_timeout.
        heads = remote_heads(repo.url, settings.branches, settings.heads_timeout, config, settings.directory_folders)
    except GitError as exc:
        record.error = str(exc)
        return record
    record.gone = sorted(branch for branch in known.branches if branch not in heads)
    todo = []
    for branch in settings.branches:
        if branch not in heads:
            continue
        row = known.branches.get(branch)
        if not force and _is_current(settings, repo, row, heads[branch]):
            record.branches.append(BranchRecord(branch, heads[branch], "unchanged"))
        elif not retry and branch_waits(row, heads[branch], now):
            assert row is not None
            record.branches.append(BranchRecord(branch, heads[branch], "waiting", error=row["error"],
                                                retry_at=row["retry_at"]))
        else:
            todo.append(branch)
    if not todo and not record.gone:
        return record
    missing = []
    try:
        if (mirror / "HEAD").exists():
            repair_mirror(mirror)  # before any git reads its config
        missing = [branch for branch in todo if not has_commit(mirror, heads[branch], config)]
        if missing and not retry and fetch_waits(known.repo, {b: heads[b] for b in missing}, now):
            assert known.repo is not None
            record.error, record.waiting, record.retry_at = known.repo["error"], True, known.repo["retry_at"]
            delete_branches(mirror, record.gone, config)
            return record
        if missing:
            fetch_branches(mirror, repo.url, missing, settings.git_timeout, config, settings.directory_folders)
            for branch in missing:  # pushed to again since ls-remote: build what was fetched
                if not has_commit(mirror, heads[branch], config):
                    heads[branch] = branch_head(mirror, branch, config)
        delete_branches(mirror, record.gone, config)
    except GitError as exc:
        record.error = str(exc)
        record.retry_heads = {branch: heads[branch] for branch in missing}
        return record
    with ObjectReader(config) as reader:
        for branch in todo:
            recorded = known.tarballs.get(tarball_name(repo.name, branch, heads[branch]))
            reuse = None if force else _reusable(settings, repo, recorded, heads[branch])
            record.branches.append(build_branch(settings, reader, repo, mirror, branch, heads[branch], reuse))
    record.branches.sort(key=lambda b: settings.branches.index(b.branch))  # configured order, as shown
    return record


def _reusable(settings: Settings, repo: Repo, recorded: dict | None, head: str) -> dict | None:
    """The recorded tarball of head when its file is still there (a branch moved back to it)."""
    if recorded and recorded["commit_sha"] == head and tarball_path(settings, repo.kind, recorded["file"]).is_file():
        return recorded
    return None


def _is_current(settings: Settings, repo: Repo, row: dict | None, head: str) -> bool:
    return bool(row and row["commit_sha"] == head and row["tarball"]
                and tarball_path(settings, repo.kind, row["tarball"]).is_file())


def sync_locked(settings: Settings, repo: Repo, recorder: Recorder, force: bool = False, retry: bool = False,
                stop: threading.Event | None = None) -> RepoRecord | None:
    """sync_repo under the repository's lock, recorded before the lock is let go; None once ``stop`` is set.

    What is recorded is read under the lock too: another process (the worker serving a
    webhook, `tardist sync --only`) may have synced this repository since the run began.
    Surprises are recorded instead of raised; a record that cannot be written (the database
    stayed locked past database_timeout) is a failure of this repository, tried again next time.
    """
    if stop is not None and stop.is_set():
        return None
    with file_lock(repo_lock_path(settings, repo.kind, repo.name)):
        if stop is not None and stop.is_set():
            return None
        try:
            record = sync_repo(settings, repo, recorder.known(repo.kind, repo.name), force, retry)
        except Exception as exc:  # a bug must cost one repository, not the run
            log.exception("unexpected error syncing %s/%s", repo.kind, repo.name)
            record = failed_record(repo, f"internal error: {exc!r}")
        try:
            recorder.save(record)
        except sqlite3.Error as exc:  # nothing of it recorded: the next sync does it again
            log.error("could not record the sync of %s/%s: %s", repo.kind, repo.name, exc)
            record = failed_record(repo, f"could not record this sync: {exc}")
    return record


def failed_record(repo: Repo, error: str) -> RepoRecord:
    """The record of a repository whose whole sync failed."""
    return RepoRecord(repo.kind, repo.name, repo.public_url, source=repo.source, error=error)
