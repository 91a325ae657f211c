"""Syncing: one repository (`sync_repo`) and a whole run (`run_sync`)."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from tardist import schema, store
from tardist.info import InfoView
from tardist.settings import Settings, SettingsError
from tardist.store import BranchRecord, RepoRecord
from worker import composer
from worker.manifest import read_manifest
from worker.mirror import (GitError, ObjectReader, branch_head, delete_branches, fetch_branches, has_commit,
                           remote_heads, run_git)
from worker.sources import Repo, list_repos, silent_kinds
from worker.tarball import Built, PublishError, build_tarball, extra_files, remove_stale_temporaries, tarball_name
from worker.tree import TreeError, read_tree

log = logging.getLogger("tardist.sync")
MAX_MESSAGES = 100  # manifest errors or warnings kept per branch: a hostile repository can make millions


def mirror_path(settings: Settings, repo: Repo) -> Path:
    """`mirrors/<kind>/<Name>.git`."""
    return settings.mirrors / repo.kind / f"{repo.name}.git"


def tarball_path(settings: Settings, kind: str, file: str) -> Path:
    """`tarballs/<kind>/<file>`."""
    return settings.tarballs / kind / file


def sync_repo(settings: Settings, repo: Repo, recorded: dict[str, dict], force: bool = False,
              tarballs: dict[str, dict] | None = None) -> RepoRecord:
    """Bring one repository's mirror and tarballs up to date; report what happened.

    ``recorded`` is what the database holds for its branches, ``tarballs`` the
    tarballs it knows of (current or superseded) by file name. Nothing here writes
    to the database: the caller records the result in one transaction.
    """
    record = RepoRecord(repo.kind, repo.name, repo.url)
    mirror = mirror_path(settings, repo)
    try:
        heads = remote_heads(repo.url, settings.branches, settings.git_timeout)
    except GitError as exc:
        record.error = str(exc)
        return record
    record.gone = sorted(branch for branch in recorded if branch not in heads)
    todo = []
    for branch in settings.branches:
        if branch not in heads:
            continue
        if force or not _is_current(settings, repo, recorded.get(branch), heads[branch]):
            todo.append(branch)
        else:
            record.branches.append(BranchRecord(branch, heads[branch], "unchanged"))
    if not todo and not record.gone:
        return record
    try:
        missing = [branch for branch in todo if not has_commit(mirror, heads[branch])]
        if missing:
            fetch_branches(mirror, repo.url, missing, settings.git_timeout)
            for branch in missing:  # pushed to again since ls-remote: build what was fetched
                if not has_commit(mirror, heads[branch]):
                    heads[branch] = branch_head(mirror, branch)
        delete_branches(mirror, record.gone)
    except GitError as exc:
        record.error = str(exc)
        return record
    with ObjectReader() as reader:
        for branch in todo:
            known = (tarballs or {}).get(tarball_name(repo.name, branch, heads[branch]))
            reuse = None if force else _reusable(settings, repo, known, heads[branch])
            record.branches.append(build_branch(settings, reader, repo, mirror, branch, heads[branch], reuse))
    return record


def _reusable(settings: Settings, repo: Repo, known: dict | None, head: str) -> dict | None:
    """The recorded tarball of head when its file is still there (a branch moved back to it)."""
    if known and known["commit_sha"] == head and tarball_path(settings, repo.kind, known["file"]).is_file():
        return known
    return None


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

        manifest = read_manifest(repo.kind, size_of, read, settings.max_manifest_bytes)
        requirements = composer.required(size_of, read, settings.max_manifest_bytes, manifest.errors)
        if reuse:
            built = Built(reuse["file"], reuse["size"], reuse["sha256"])
            vendored = composer.Vendored(tree, packages=json.loads(reuse.get("vendor") or "[]"))
        else:
            extras = extra_files(repo.name, branch, commit, committed, repo.url)
            dest = tarball_path(settings, repo.kind, tarball_name(repo.name, branch, commit))
            with composer.vendor_tree(settings, reader, tree, requirements, commit) as vendored:
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
        warnings=shown(tree.warnings + vendored.warnings), vendor=vendored.packages)


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


def _sync_guarded(settings: Settings, repo: Repo, recorded: dict[str, dict], force: bool,
                  tarballs: dict[str, dict], stop: threading.Event) -> RepoRecord | None:
    """sync_repo, skipped once a stop was asked for, with surprises recorded instead of raised."""
    if stop.is_set():
        return None
    try:
        return sync_repo(settings, repo, recorded, force, tarballs)
    except Exception as exc:  # a bug must cost one repository, not the run
        log.exception("unexpected error syncing %s/%s", repo.kind, repo.name)
        return RepoRecord(repo.kind, repo.name, repo.url, error=f"internal error: {exc!r}")


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


def run_sync(settings: Settings, *, only: tuple[str, ...] = (), kind: str | None = None, force: bool = False,
             jobs: int | None = None, on_repo: Callable[[RepoRecord], None] | None = None,
             on_start: Callable[[int], None] | None = None,
             stop: threading.Event | None = None, warnings: list[str] | None = None) -> dict:
    """Sync every selected repository in parallel and record each in its own transaction.

    The caller holds the sync lock. Returns the summary `tardist sync` prints.
    """
    started = time.monotonic()
    stop = stop or threading.Event()
    warnings = [] if warnings is None else warnings
    repos = list_repos(settings, warnings)
    selected = select_repos(settings, repos, only, kind)
    db = schema.open_writer(settings.database)
    view = InfoView.of(settings)
    try:
        store.ensure_rendered(db, view)
        remove_stale_temporaries(settings.tarballs)
        composer.remove_stale_scratch(settings)
        warnings.extend(composer.notes(settings))
        run_id = store.start_run(db, {"only": list(only), "kind": kind, "force": force})
        recorded = store.all_recorded_branches(db)
        tarballs = store.all_recorded_tarballs(db)
        if on_start:
            on_start(len(selected))
        summary = {"repositories": 0, "built": 0, "unchanged": 0, "failed": 0}
        with ThreadPoolExecutor(max_workers=jobs or settings.jobs, thread_name_prefix="sync") as pool:
            futures = [pool.submit(_sync_guarded, settings, repo, recorded.get((repo.kind, repo.name), {}),
                                   force, tarballs.get((repo.kind, repo.name), {}), stop) for repo in selected]
            for future in as_completed(futures):
                record = future.result()
                if record is None:
                    continue
                store.save_repo(db, record, view)
                summary["repositories"] += 1
                summary["built"] += sum(b.state == "built" for b in record.branches)
                summary["unchanged"] += sum(b.state in ("unchanged", "reused") for b in record.branches)
                summary["failed"] += record.failed
                if on_repo:
                    on_repo(record)
        if not only and kind is None and not stop.is_set():
            silent = silent_kinds(settings, repos)
            for quiet in sorted(silent & {recorded_kind for recorded_kind, _name in recorded}):
                warnings.append(f"no {quiet} listed at all: none of them is marked removed this run")
            store.mark_removed(db, {(repo.kind, repo.name) for repo in repos}, keep_kinds=silent)
        summary["interrupted"] = stop.is_set()
        summary["seconds"] = round(time.monotonic() - started, 3)
        store.finish_run(db, run_id, summary, warnings)
        return summary
    finally:
        composer.remove_scratch_root(settings)
        db.close()
