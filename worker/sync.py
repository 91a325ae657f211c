"""Syncing: one repository (`sync_repo`) and a whole run (`run_sync`)."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import sqlite_utils

from tardist import catalog, schema, store
from tardist.info import InfoView
from tardist.settings import Settings, SettingsError
from tardist.store import BranchRecord, RepoRecord
from worker import composer
from worker.heads import moved, quiet_summary
from worker.lock import file_lock, repo_lock_path
from worker.manifest import read_manifest
from worker.mirror import (GitError, ObjectReader, branch_head, delete_branches, fetch_branches, has_commit,
                           remote_heads, repair_mirror, run_git, use_git_config)
from worker.publish import publish
from worker.sources import Listing, Repo, list_repos
from worker.tarball import (Built, PublishError, build_tarball, extra_files, place_extras, remove_stale_temporaries,
                            tarball_name)
from worker.tree import TreeError, read_tree

log = logging.getLogger("tardist.sync")
MAX_MESSAGES = 100  # manifest errors or warnings kept per branch: a hostile repository can make millions
PUBLISH_EVERY = 60  # seconds: during a long run, published/ catches up with what was recorded this often


def mirror_path(settings: Settings, repo: Repo) -> Path:
    """`mirrors/<kind>/<Name>.git`."""
    return settings.mirrors / repo.kind / f"{repo.name}.git"


def tarball_path(settings: Settings, kind: str, file: str) -> Path:
    """`tarballs/<kind>/<file>`."""
    return settings.tarballs / kind / file


def sync_repo(settings: Settings, repo: Repo, recorded: dict[str, dict], force: bool = False,
              tarballs: dict[str, dict] | None = None, retry: bool = False,
              repo_row: dict | None = None) -> RepoRecord:
    """Bring one repository's mirror and tarballs up to date; report what happened.

    ``recorded`` is what the database holds for its branches, ``tarballs`` the
    tarballs it knows of (current or superseded) by file name, ``repo_row`` its
    repository row. What failed before at the same commit is not tried again
    before its retry time, unless ``retry`` or ``force``. Nothing here writes to
    the database: the caller records the result in one transaction.
    """
    use_git_config(settings.git_config)
    retry = retry or force
    now = store.utcnow()
    record = RepoRecord(repo.kind, repo.name, repo.public_url, source=repo.source)
    mirror = mirror_path(settings, repo)
    try:
        # A head check is one short round trip: a remote that never answers costs heads_timeout, not git_timeout.
        heads = remote_heads(repo.url, settings.branches, settings.heads_timeout)
    except GitError as exc:
        record.error = str(exc)
        return record
    record.gone = sorted(branch for branch in recorded if branch not in heads)
    todo = []
    for branch in settings.branches:
        if branch not in heads:
            continue
        row = recorded.get(branch)
        if not force and _is_current(settings, repo, row, heads[branch]):
            record.branches.append(BranchRecord(branch, heads[branch], "unchanged"))
        elif not retry and _backing_off(row, heads[branch], now):
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
        missing = [branch for branch in todo if not has_commit(mirror, heads[branch])]
        if missing and not retry and _fetch_backing_off(repo_row, {b: heads[b] for b in missing}, now):
            assert repo_row is not None
            record.error, record.waiting, record.retry_at = repo_row["error"], True, repo_row["retry_at"]
            delete_branches(mirror, record.gone)
            return record
        if missing:
            fetch_branches(mirror, repo.url, missing, settings.git_timeout)
            for branch in missing:  # pushed to again since ls-remote: build what was fetched
                if not has_commit(mirror, heads[branch]):
                    heads[branch] = branch_head(mirror, branch)
        delete_branches(mirror, record.gone)
    except GitError as exc:
        record.error = str(exc)
        record.retry_heads = {branch: heads[branch] for branch in missing}
        return record
    with ObjectReader() as reader:
        for branch in todo:
            known = (tarballs or {}).get(tarball_name(repo.name, branch, heads[branch]))
            reuse = None if force else _reusable(settings, repo, known, heads[branch])
            record.branches.append(build_branch(settings, reader, repo, mirror, branch, heads[branch], reuse))
    record.branches.sort(key=lambda b: settings.branches.index(b.branch))  # configured order, as shown
    return record


def _reusable(settings: Settings, repo: Repo, known: dict | None, head: str) -> dict | None:
    """The recorded tarball of head when its file is still there (a branch moved back to it)."""
    if known and known["commit_sha"] == head and tarball_path(settings, repo.kind, known["file"]).is_file():
        return known
    return None


def _backing_off(row: dict | None, head: str, now: str) -> bool:
    """True when the branch failed at this very head and its retry time has not come yet."""
    return bool(row and row["error"] and row["error_commit"] == head and (row.get("retry_at") or "") > now)


def _fetch_backing_off(repo_row: dict | None, wanted: dict[str, str], now: str) -> bool:
    """True when fetching these very heads failed before and its retry time has not come yet."""
    return bool(repo_row and repo_row["error"] and (repo_row.get("retry_at") or "") > now
                and repo_row.get("retry_heads") == json.dumps(wanted, sort_keys=True))


def _is_current(settings: Settings, repo: Repo, row: dict | None, head: str) -> bool:
    return bool(row and row["commit_sha"] == head and row["tarball"]
                and tarball_path(settings, repo.kind, row["tarball"]).is_file())


def build_branch(settings: Settings, reader: ObjectReader, repo: Repo, mirror: Path,
                 branch: str, commit: str, reuse: dict | None = None) -> BranchRecord:
    """Build and publish the tarball of one branch head; failures become a failed record.

    With ``reuse`` (the recorded tarball of this commit, still on disk) the manifest
    and warnings are read again but the tarball is not rebuilt.
    """
    try:
        committed = int(run_git(["show", "-s", "--format=%ct", commit], cwd=mirror).strip())
        tree = read_tree(settings, reader, mirror, repo.url, commit)

        def size_of(path: str) -> int | None:
            blob = tree.files.get(path)
            return blob.size if blob else None

        def read(path: str) -> bytes:
            return reader.read(tree.files[path].mirror, tree.files[path].sha)

        manifest = read_manifest(repo.kind, size_of, read, settings.max_manifest_bytes, files=tree.files)
        requirements = composer.required(size_of, read, settings.max_manifest_bytes, manifest.errors)
        # remoteURL is what people may be shown: never a directory source's path on this server.
        generated = extra_files(repo.name, branch, commit, committed, repo.public_url or "")
        if reuse:
            built = Built(reuse["file"], reuse["size"], reuse["sha256"])
            vendored = composer.Vendored(tree, packages=json.loads(reuse.get("vendor") or "[]"))
            extras, extra_warnings = place_extras(tree, generated)
        else:
            dest = tarball_path(settings, repo.kind, tarball_name(repo.name, branch, commit))
            with composer.vendor_tree(settings, reader, tree, requirements, commit) as vendored:
                extras, extra_warnings = place_extras(vendored.tree, generated)
                built = build_tarball(reader, vendored.tree, {**extras, **vendored.files}, repo.name, committed, dest)
    except (GitError, TreeError, PublishError, composer.ComposerError) as exc:
        return BranchRecord(branch, commit, "failed", error=readable(str(exc)))
    except Exception as exc:  # a bug or a broken mirror must cost this branch only
        log.exception("unexpected error building %s/%s %s", repo.kind, repo.name, branch)
        return BranchRecord(branch, commit, "failed", error=readable(f"internal error: {exc!r}"))
    return BranchRecord(
        branch, commit, "reused" if reuse else "built", built_at=reuse["built_at"] if reuse else "",
        committed_at=store.utc_iso(datetime.fromtimestamp(committed, timezone.utc)),
        tarball=built.file, size=built.size, sha256=built.sha256,
        manifest=manifest.fields, manifest_errors=shown(manifest.errors),
        warnings=shown(extra_warnings + tree.warnings + vendored.warnings), modules=sorted(tree.modules),
        descriptions=manifest.descriptions, vendor=vendored.packages)


def shown(messages: list[str]) -> list[str]:
    """Messages as recorded and served: readable, and no more than MAX_MESSAGES of them."""
    kept = [readable(message) for message in messages[:MAX_MESSAGES]]
    if len(messages) > MAX_MESSAGES:
        kept.append(f"... and {len(messages) - MAX_MESSAGES} more")
    return kept


def readable(text: str) -> str:
    """Text that SQLite and JSON can hold: bytes of file names that are not UTF-8 shown as \\xNN."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a file name (a JSON escape)
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def _sync_guarded(settings: Settings, repo: Repo, force: bool, stop: threading.Event,
                  db: sqlite_utils.Database, db_lock: threading.Lock, view: InfoView,
                  retry: bool = False) -> RepoRecord | None:
    """sync_repo under the repository's lock, recorded before the lock is let go; None once a stop was asked for.

    What is recorded is read under the lock too: another process (the worker serving a
    webhook, `tardist sync --only`) may have synced this repository since the run began.
    Surprises are recorded instead of raised; a record that cannot be written (the database
    stayed locked past database_timeout) is a failure of this repository, tried again next time.
    """
    if stop.is_set():
        return None
    with file_lock(repo_lock_path(settings, repo.kind, repo.name)):
        if stop.is_set():
            return None
        try:
            with db_lock:
                recorded = store.recorded_branches(db, repo.kind, repo.name)
                tarballs = store.recorded_tarballs(db, repo.kind, repo.name)
                repo_row = store.recorded_repo(db, repo.kind, repo.name)
            record = sync_repo(settings, repo, recorded, force, tarballs, retry, repo_row)
        except Exception as exc:  # a bug must cost one repository, not the run
            log.exception("unexpected error syncing %s/%s", repo.kind, repo.name)
            record = RepoRecord(repo.kind, repo.name, repo.public_url, source=repo.source,
                                error=f"internal error: {exc!r}")
        try:
            with db_lock:
                store.save_repo(db, record, view)
        except sqlite3.Error as exc:  # nothing of it recorded: the next sync does it again
            log.error("could not record the sync of %s/%s: %s", repo.kind, repo.name, exc)
            record = RepoRecord(repo.kind, repo.name, repo.public_url, source=repo.source,
                                error=f"could not record this sync: {exc}")
    return record


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
        record = _sync_guarded(settings, repo, force, threading.Event(), db, threading.Lock(),
                               InfoView.of(settings), retry)
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
        kept = store.count_listed_by(db, source.key)
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


def run_sync(settings: Settings, *, only: tuple[str, ...] = (), kind: str | None = None, force: bool = False,
             jobs: int | None = None, on_repo: Callable[[RepoRecord], None] | None = None,
             on_start: Callable[[int], None] | None = None,
             stop: threading.Event | None = None, warnings: list[str] | None = None,
             retry: bool = False, changed: bool = False) -> dict:
    """Sync every selected repository in parallel and record each in its own transaction.

    With ``changed`` (a check run), repositories whose listed heads are what is recorded
    are left alone without any git process (worker/heads.py); nothing moved, nothing recorded.

    With ``retry``, what failed before is tried again now, whatever its backoff.
    A full run's caller holds the sync lock; each repository is synced under its own
    lock, so a run with ``only`` needs none. Returns the summary `tardist sync` prints.
    """
    started = time.monotonic()
    stop = stop or threading.Event()
    warnings = [] if warnings is None else warnings
    listed_at = store.utcnow()
    listing = list_repos(settings, warnings)
    selected = select_repos(settings, listing.repos, only, kind)
    if changed:
        selected, settled = moved(settings, selected)
        if not selected:
            return quiet_summary(len(listing.unlisted), settled, time.monotonic() - started)
    db = schema.open_writer(settings.database, settings.database_timeout)
    view = InfoView.of(settings)
    try:
        pending: set[tuple[str, str]] = set()  # recorded, not yet published
        if store.ensure_rendered(db, view):
            publish_recorded(settings, db, None, warnings)
        store.clear_backoff_if_changed(db, json.dumps([
            settings.git_config, settings.submodule_protocols, settings.git_timeout, settings.max_tarball_bytes,
            settings.max_files, settings.max_manifest_bytes, settings.composer, str(settings.composer_home),
            settings.composer_timeout, settings.build_sandbox]))
        remove_stale_temporaries(settings.tarballs)
        composer.remove_stale_scratch(settings)
        warnings.extend(composer.notes(settings))
        run_id = store.start_run(db, {"only": list(only), "kind": kind, "force": force, "retry": retry},
                                 exclusive=not only)
        db_lock = threading.Lock()
        if on_start:
            on_start(len(selected))
        summary = {"repositories": 0, "built": 0, "unchanged": 0, "failed": 0, "waiting": 0,
                   "unlisted_sources": len(listing.unlisted)}
        if changed:
            summary["settled"] = settled
        last_published = time.monotonic()
        with ThreadPoolExecutor(max_workers=jobs or settings.jobs, thread_name_prefix="sync") as pool:
            futures = {pool.submit(_sync_guarded, settings, repo, force, stop, db, db_lock, view, retry): repo
                       for repo in selected}
            for future in as_completed(futures):
                try:
                    record = future.result()
                except Exception as exc:  # its lock file could not be taken...: this repository fails, not the run
                    repo = futures[future]
                    log.error("could not sync %s/%s: %r", repo.kind, repo.name, exc)
                    record = RepoRecord(repo.kind, repo.name, repo.public_url, source=repo.source,
                                        error=f"internal error: {exc!r}")
                if record is None:
                    continue
                pending.add((record.kind, record.name))
                if time.monotonic() - last_published >= PUBLISH_EVERY:
                    with db_lock:  # the connection is shared with the threads that record
                        publish_recorded(settings, db, pending, warnings)
                    last_published = time.monotonic()
                summary["repositories"] += 1
                summary["built"] += sum(b.state == "built" for b in record.branches)
                summary["unchanged"] += sum(b.state in ("unchanged", "reused") for b in record.branches)
                summary["failed"] += record.failed
                summary["waiting"] += record.waits
                if on_repo:
                    on_repo(record)
        if not only and kind is None and not stop.is_set():
            try:
                pending.update(_mark_removed(db, listing, listed_at, warnings))
            except sqlite3.Error as exc:  # the next run marks them
                log.error("could not mark removed repositories: %s", exc)
                warnings.append(f"repositories no source lists any more not marked removed: {exc}")
        publish_recorded(settings, db, pending, warnings)
        summary["interrupted"] = stop.is_set()
        summary["seconds"] = round(time.monotonic() - started, 3)
        try:
            store.finish_run(db, run_id, summary, warnings)
        except sqlite3.Error as exc:  # the summary still tells; the next full run marks the row interrupted
            log.error("could not record the end of run %d: %s", run_id, exc)
            warnings.append(f"the end of this run is not recorded: {exc}")
            summary["unrecorded"] = True
        return summary
    finally:
        composer.remove_scratch_root(settings)
        db.close()
