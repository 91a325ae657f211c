"""Garbage collection: superseded tarballs and removed repositories past retention."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tardist import schema, store
from tardist.layout import (
    MODULES_FOLDER,
    TARBALL_SUFFIX,
    TEMP_PREFIX,
    mirror_path,
    module_lock_path,
    repo_lock_path,
    tarball_path,
)
from tardist.settings import Settings
from tardist.timestamps import utc_iso
from worker import recorded
from worker.lock import file_lock
from worker.publish import publish


def collect_garbage(settings: Settings, dry_run: bool = False, now: datetime | None = None) -> dict:
    """Remove what has been superseded or removed for longer than retention_days, and the
    submodule mirrors no remaining tarball uses.

    Never touches a tarball the database lists as current. Then checks every file of published/.
    Call while holding the sync lock; mirrors are removed under their repository's lock, since
    the worker syncs single repositories beside it.
    """
    now = now or datetime.now(UTC)
    cutoff_time = now - timedelta(days=settings.retention_days)
    cutoff = utc_iso(cutoff_time)
    report: dict = {"removed": [], "tarballs": 0, "mirrors": 0, "bytes": 0, "dry_run": dry_run, "warnings": []}
    db = schema.open_writer(settings.database, settings.database_timeout)
    try:
        for kind, name, file in recorded.expired_tarballs(db, cutoff):
            # Under the repository's lock: a sync beside gc may be reusing this tarball right now.
            with file_lock(repo_lock_path(settings, kind, name)):
                if recorded.still_expired(db, kind, file, cutoff):
                    _remove(report, tarball_path(settings, kind, file), dry_run, "tarballs")
                    if not dry_run:
                        store.forget_tarball(db, kind, file)
        known = recorded.known_tarballs(db)
        for path in _tarball_files(settings.tarballs):
            # Written but never recorded (a crash between the two): old ones are orphans.
            if (path.parent.name, path.name) not in known and path.stat().st_mtime < cutoff_time.timestamp():
                _remove(report, path, dry_run, "tarballs")
        for kind, name in recorded.expired_repos(db, cutoff):
            with file_lock(repo_lock_path(settings, kind, name)):
                _remove(report, mirror_path(settings, kind, name), dry_run, "mirrors")
                if not dry_run:
                    store.forget_repo(db, kind, name)
        used = recorded.modules_in_use(db, cutoff)
        if used is None:
            report["warnings"].append("submodule mirrors kept: some tarballs were built before tardist recorded "
                                      "which submodules they use (`tardist sync --force` records it)")
        else:
            for module in sorted((settings.mirrors / MODULES_FOLDER).glob("*.git")):
                # Not one being made, nor one a sync used within the retention period (fetch_commit
                # touches it): a single-repository sync beside gc may be building from it now.
                if (module.name not in used and not module.name.startswith(TEMP_PREFIX)
                        and module.stat().st_mtime < cutoff_time.timestamp()):
                    with file_lock(_mirror_lock(settings, module)):
                        _remove(report, module, dry_run, "mirrors")
        for leftover in settings.mirrors.glob(f"*/{TEMP_PREFIX}*"):  # a mirror a killed run made or removed
            with file_lock(_mirror_lock(settings, leftover)):  # ...or one a running sync is making
                _remove(report, leftover, dry_run, "mirrors")
        if not dry_run:  # every published file checked again: repairs what was lost or left behind
            report["published"] = publish(settings, db, None)
    finally:
        db.close()
    return report


def _mirror_lock(settings: Settings, mirror: Path) -> Path:
    """The lock file a sync holds while it touches mirror (or its .tmp- twin)."""
    final = mirror.with_name(mirror.name.removeprefix(TEMP_PREFIX))
    if final.parent.name == MODULES_FOLDER:
        return module_lock_path(final)
    return repo_lock_path(settings, final.parent.name, final.name.removesuffix(".git"))


def _tarball_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(path for kind_dir in folder.iterdir() if kind_dir.is_dir()
                  for path in kind_dir.glob(f"*{TARBALL_SUFFIX}") if not path.name.startswith(TEMP_PREFIX))


def _remove(report: dict, path: Path, dry_run: bool, counter: str) -> None:
    if not path.exists():
        return
    size = path.stat().st_size if path.is_file() else sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file())
    report["removed"].append(str(path))
    report[counter] += 1
    report["bytes"] += size
    if not dry_run:
        if path.is_dir() and not path.name.startswith(TEMP_PREFIX):
            # Renamed first: a kill half way must not leave a mirror that looks whole but lacks
            # objects. ensure_mirror clears such a .tmp- folder if the repository comes back.
            aside = path.with_name(f"{TEMP_PREFIX}{path.name}")
            os.replace(path, aside)
            shutil.rmtree(aside)
        elif path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
