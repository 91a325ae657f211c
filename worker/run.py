"""Runs: every selected repository in parallel (`run_sync`), or one repository now (`sync_one`).

Each repository is synced and recorded by `worker.sync`; a run lists the sources, marks what
left them removed, keeps published/ up to date as it goes and records itself in the runs table.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Literal

import sqlite_utils

from tardist import catalog, schema, store
from tardist.info import InfoView
from tardist.records import RepoRecord
from tardist.settings import Settings, SettingsError
from tardist.timestamps import utcnow
from worker import composer_install, recorded
from worker.heads import moved
from worker.publish import publish
from worker.sources import Listing, Repo, list_repos
from worker.sync import Recorder, failed_record, sync_locked
from worker.tarball import remove_stale_temporaries

log = logging.getLogger("tardist.sync")
PUBLISH_EVERY = 60  # seconds: during a long run, published/ catches up with what was recorded this often
RunStatus = Literal["running", "ok", "failed", "interrupted"]


@dataclass
class RunSummary:
    """What a run did: what `tardist sync` prints (as_json), and the warnings it printed before."""

    repositories: int = 0
    built: int = 0
    unchanged: int = 0
    failed: int = 0
    waiting: int = 0
    unlisted_sources: int = 0
    settled: int | None = None  # a check run (--changed): repositories left alone, their listed heads as recorded
    interrupted: bool = False
    seconds: float = 0.0
    unrecorded: bool = False  # the end of the run could not be recorded
    warnings: list[str] = field(default_factory=list)

    def count(self, record: RepoRecord) -> None:
        """Add one repository's record."""
        self.repositories += 1
        self.built += sum(b.state == "built" for b in record.branches)
        self.unchanged += sum(b.state in ("unchanged", "reused") for b in record.branches)
        self.failed += record.failed
        self.waiting += record.waits

    @property
    def status(self) -> RunStatus:
        """How the run ended, as the runs table records it."""
        return "interrupted" if self.interrupted else "failed" if self.failed or self.unlisted_sources else "ok"

    @property
    def ok(self) -> bool:
        """True when nothing failed, nothing stopped the run and all of it is recorded."""
        return self.status == "ok" and not self.unrecorded

    def as_json(self) -> dict:
        """The summary `tardist sync` prints and `tardist worker` logs (warnings are printed apart)."""
        shown = asdict(self)
        del shown["warnings"]
        if not self.unrecorded:
            del shown["unrecorded"]
        if self.settled is None:
            del shown["settled"]
        return shown


def sync_one(settings: Settings, kind: str, name: str, force: bool = False,
             retry: bool = False) -> RepoRecord | None:
    """Sync one repository now, as `tardist worker` does on request; None if no source has it.

    Needs no sync lock: the repository's own lock keeps it from running twice at once.
    With ``retry``, what failed before is tried again now, whatever its backoff. Its
    published answers are updated at once.
    """
    db = schema.open_writer(settings.database, settings.database_timeout)
    try:
        found = catalog.find(settings, db, kind, name)
        if found is None:
            return None
        url, source = found
        repo = Repo(kind, name, url, source.shown_url(name, url), source.key)
        record = sync_locked(settings, repo, Recorder(db, InfoView.of(settings)), force, retry)
        publish_recorded(settings, db, {(kind, name)}, [])
        return record
    finally:
        db.close()


def select_repos(settings: Settings, repos: list[Repo], only: tuple[str, ...] = (),
                 kind: str | None = None) -> list[Repo]:
    """The repositories a run covers; asking for an unknown name or kind is a usage error."""
    unknown = sorted(set(only) - {repo.name for repo in repos})
    if unknown:
        raise SettingsError(f"--only: no configured repository is named {', '.join(unknown)}")
    kinds = sorted({source.kind for source in settings.sources})
    if kind is not None and kind not in kinds:
        raise SettingsError(f"--kind: no source is of kind {kind!r} (configured: {', '.join(kinds) or 'none'})")
    return [repo for repo in repos if (not only or repo.name in only) and (kind is None or repo.kind == kind)]


def _mark_removed(db: sqlite_utils.Database, listing: Listing, listed_at: str,
                  warnings: list[str]) -> list[tuple[str, str]]:
    """Mark what no source lists any more as removed, except what a source that lists nothing,
    or could not be listed, had.

    A source that suddenly lists nothing is far more often an unmounted folder or a Gerrit
    hiccup than a real mass removal, whatever the other sources of its kind list; one that
    could not be listed says nothing about its repositories.
    """
    for index, source in listing.silent.items():
        kept = recorded.count_listed_by(db, source.key)
        warnings.append(f"source[{index}] ({source.key}) lists no repositories" + (
            f": the {kept} it listed before are kept, not marked removed (remove the [[source]] to retire them)"
            if kept else ""))
    kept_sources = [*listing.silent.values(), *listing.unlisted.values()]
    return store.mark_removed(db, {(repo.kind, repo.name) for repo in listing.repos},
                              keep_sources={source.key for source in kept_sources}, listed_at=listed_at)


def publish_recorded(settings: Settings, db: sqlite_utils.Database, changed: set[tuple[str, str]] | None,
                     warnings: list[str]) -> None:
    """Publish what was recorded (and forget it); a failure is a warning of the run, not its end."""
    try:
        publish(settings, db, changed)
    except (OSError, sqlite3.Error) as exc:  # disk full, a locked database: the next publish checks every file
        log.error("could not update %s: %s", settings.published, exc)
        warnings.append(f"published answers not updated: {exc}")
    if changed is not None:
        changed.clear()


def _retry_settings_key(settings: Settings) -> str:
    """The settings a failure may depend on: when they change, everything is retried at once."""
    return json.dumps([
        settings.git_config, settings.submodule_protocols, settings.git_timeout, settings.max_tarball_bytes,
        settings.max_files, settings.max_manifest_bytes, settings.composer, str(settings.composer_home),
        settings.composer_timeout, settings.build_sandbox])


def run_sync(settings: Settings, *, only: tuple[str, ...] = (), kind: str | None = None, force: bool = False,
             jobs: int | None = None, on_repo: Callable[[RepoRecord], None] | None = None,
             on_start: Callable[[int], None] | None = None,
             stop: threading.Event | None = None, retry: bool = False, changed: bool = False) -> RunSummary:
    """Sync every selected repository in parallel and record each in its own transaction.

    With ``changed`` (a check run), repositories whose listed heads are what is recorded
    are left alone without any git process (worker/heads.py); nothing moved, nothing recorded.

    With ``retry``, what failed before is tried again now, whatever its backoff.
    A full run's caller holds the sync lock; each repository is synced under its own
    lock, so a run with ``only`` needs none. Returns what `tardist sync` prints.
    """
    started = time.monotonic()
    stop = stop or threading.Event()
    summary = RunSummary()
    warnings = summary.warnings
    listed_at = utcnow()
    listing = list_repos(settings, warnings)
    selected = select_repos(settings, listing.repos, only, kind)
    summary.unlisted_sources = len(listing.unlisted)
    if changed:
        selected, summary.settled = moved(settings, selected)
        if not selected:
            summary.seconds = round(time.monotonic() - started, 3)
            return summary
    db = schema.open_writer(settings.database, settings.database_timeout)
    recorder = Recorder(db, InfoView.of(settings))
    try:
        pending: set[tuple[str, str]] = set()  # recorded, not yet published
        if store.ensure_rendered(db, recorder.view):
            publish_recorded(settings, db, None, warnings)
        store.clear_backoff_if_changed(db, _retry_settings_key(settings))
        remove_stale_temporaries(settings.tarballs)
        composer_install.remove_stale_scratch(settings)
        warnings.extend(composer_install.notes(settings))
        run_id = store.start_run(db, {"only": list(only), "kind": kind, "force": force, "retry": retry,
                                     "changed": changed},
                                 exclusive=not only)
        if on_start:
            on_start(len(selected))
        summary.unlisted_sources = len(listing.unlisted)
        last_published = time.monotonic()
        with ThreadPoolExecutor(max_workers=jobs or settings.jobs, thread_name_prefix="sync") as pool:
            futures = {pool.submit(sync_locked, settings, repo, recorder, force, retry, stop): repo
                       for repo in selected}
            for future in as_completed(futures):
                try:
                    record = future.result()
                except Exception as exc:  # its lock file could not be taken...: this repository fails, not the run
                    repo = futures[future]
                    log.error("could not sync %s/%s: %r", repo.kind, repo.name, exc)
                    record = failed_record(repo, f"internal error: {exc!r}")
                if record is None:
                    continue
                pending.add((record.kind, record.name))
                if time.monotonic() - last_published >= PUBLISH_EVERY:
                    with recorder.lock:  # the connection is shared with the threads that record
                        publish_recorded(settings, db, pending, warnings)
                    last_published = time.monotonic()
                summary.count(record)
                if on_repo:
                    on_repo(record)
        if not only and kind is None and not stop.is_set():
            try:
                pending.update(_mark_removed(db, listing, listed_at, warnings))
            except sqlite3.Error as exc:  # the next run marks them
                log.error("could not mark removed repositories: %s", exc)
                warnings.append(f"repositories no source lists any more not marked removed: {exc}")
        publish_recorded(settings, db, pending, warnings)
        summary.interrupted = stop.is_set()
        summary.seconds = round(time.monotonic() - started, 3)
        try:
            store.finish_run(db, run_id, summary.status, summary.as_json(), warnings)
        except sqlite3.Error as exc:  # the summary still tells; the next full run marks the row interrupted
            log.error("could not record the end of run %d: %s", run_id, exc)
            warnings.append(f"the end of this run is not recorded: {exc}")
            summary.unrecorded = True
        return summary
    finally:
        composer_install.remove_scratch_root(settings)
        db.close()
