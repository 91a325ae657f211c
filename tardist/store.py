"""The worker's side of the database: what a sync learned, written one transaction per repository.

The worker is the only writer; the schema lives in `tardist.schema`, the
web app's reads in `tardist.queries`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import sqlite_utils

from tardist.info import InfoView, render_info


def utc_iso(moment: datetime) -> str:
    """A moment as the ISO 8601 UTC string tardist stores and serves, e.g. 2026-11-20T10:00:00Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> str:
    """The current time as utc_iso."""
    return utc_iso(datetime.now(timezone.utc))


@dataclass
class BranchRecord:
    """What one sync learned about one snapshot branch."""

    branch: str
    commit: str
    state: str  # "built", "reused" (a recorded tarball of this commit), "unchanged" or "failed"
    committed_at: str = ""
    tarball: str = ""
    size: int = 0
    sha256: str = ""
    manifest: dict[str, Any] | None = None
    manifest_errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    built_at: str = ""  # when the tarball was built, if not now
    vendor: list[dict[str, str]] = field(default_factory=list)  # packages composer put in vendor/


@dataclass
class RepoRecord:
    """What one sync learned about one repository."""

    kind: str
    name: str
    repository: str
    branches: list[BranchRecord] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # recorded branches that no longer exist
    error: str | None = None  # the whole repository failed (clone, fetch, ...)

    @property
    def failed(self) -> bool:
        """True when the repository or any of its branches failed."""
        return self.error is not None or any(b.state == "failed" for b in self.branches)


def all_recorded_branches(db: sqlite_utils.Database) -> dict[tuple[str, str], dict[str, dict]]:
    """Every recorded branch row, by (kind, name) and then branch name."""
    recorded: dict[tuple[str, str], dict[str, dict]] = {}
    for row in db["branches"].rows:
        recorded.setdefault((row["kind"], row["name"]), {})[row["branch"]] = row
    return recorded


def all_recorded_tarballs(db: sqlite_utils.Database) -> dict[tuple[str, str], dict[str, dict]]:
    """Every recorded tarball row, current or superseded, by (kind, name) and then file name."""
    recorded: dict[tuple[str, str], dict[str, dict]] = {}
    for row in db["tarballs"].rows:
        recorded.setdefault((row["kind"], row["name"]), {})[row["file"]] = row
    return recorded


def save_repo(db: sqlite_utils.Database, record: RepoRecord, view: InfoView) -> None:
    """Record one repository's sync, and its rendered /info answer, in a single transaction."""
    now = utcnow()
    with db.atomic():
        db["repos"].upsert({
            "kind": record.kind, "name": record.name, "repository": record.repository,
            "present": 1, "removed_at": None, "checked_at": now, "error": record.error,
        }, pk=("kind", "name"))
        for branch in record.branches:
            _save_branch(db, record, branch, now)
        for branch in record.gone:
            db.execute("DELETE FROM branches WHERE kind = ? AND name = ? AND branch = ?",
                       [record.kind, record.name, branch])
            _supersede(db, record.kind, record.name, branch, keep="", now=now)
        _render(db, view, record.kind, record.name)


def _render(db: sqlite_utils.Database, view: InfoView, kind: str, name: str) -> None:
    repo = next(db.query("SELECT * FROM repos WHERE kind = ? AND name = ?", [kind, name]))
    branches = list(db.query("SELECT * FROM branches WHERE kind = ? AND name = ?", [kind, name]))
    db.execute("UPDATE repos SET info = ? WHERE kind = ? AND name = ?",
               [json.dumps(render_info(view, repo, branches), separators=(",", ":")), kind, name])


def ensure_rendered(db: sqlite_utils.Database, view: InfoView) -> None:
    """Render every /info answer again if the settings they depend on changed since."""
    row = db.execute("SELECT value FROM meta WHERE key = 'info_view'").fetchone()
    if row and row[0] == view.key:
        return
    with db.atomic():
        for kind, name in db.execute("SELECT kind, name FROM repos").fetchall():
            _render(db, view, kind, name)
        db["meta"].upsert({"key": "info_view", "value": view.key}, pk="key")


def _save_branch(db: sqlite_utils.Database, record: RepoRecord, branch: BranchRecord, now: str) -> None:
    key = {"kind": record.kind, "name": record.name, "branch": branch.branch}
    if branch.state == "failed":
        db["branches"].upsert({**key, "error": branch.error, "error_commit": branch.commit},
                              pk=("kind", "name", "branch"))
        return
    if branch.state == "unchanged":
        db.execute("UPDATE branches SET error = NULL, error_commit = NULL "
                   "WHERE kind = ? AND name = ? AND branch = ? AND error IS NOT NULL",
                   [record.kind, record.name, branch.branch])
        return
    db["branches"].upsert({
        **key, "commit_sha": branch.commit, "committed_at": branch.committed_at,
        "tarball": branch.tarball, "size": branch.size, "sha256": branch.sha256, "built_at": branch.built_at or now,
        "manifest": json.dumps(branch.manifest) if branch.manifest is not None else None,
        "manifest_errors": json.dumps(branch.manifest_errors),
        "warnings": json.dumps(branch.warnings), "error": None, "error_commit": None,
        "vendor": json.dumps(branch.vendor),
    }, pk=("kind", "name", "branch"))
    _supersede(db, record.kind, record.name, branch.branch, keep=branch.tarball, now=now)
    db["tarballs"].upsert({
        "kind": record.kind, "file": branch.tarball, "name": record.name, "branch": branch.branch,
        "commit_sha": branch.commit, "sha256": branch.sha256, "size": branch.size,
        "built_at": branch.built_at or now, "superseded_at": None, "vendor": json.dumps(branch.vendor),
    }, pk=("kind", "file"))


def _supersede(db: sqlite_utils.Database, kind: str, name: str, branch: str, keep: str, now: str) -> None:
    db.execute("UPDATE tarballs SET superseded_at = ? WHERE kind = ? AND name = ? AND branch = ? "
               "AND file != ? AND superseded_at IS NULL", [now, kind, name, branch, keep])


def mark_removed(db: sqlite_utils.Database, present: Iterable[tuple[str, str]],
                 keep_kinds: set[str] = frozenset()) -> list[tuple[str, str]]:
    """Mark repositories no source lists any more as removed (except those of keep_kinds); return them."""
    present = set(present)
    now = utcnow()
    removed = [(kind, name) for kind, name in
               db.execute("SELECT kind, name FROM repos WHERE present = 1").fetchall()
               if (kind, name) not in present and kind not in keep_kinds]
    with db.atomic():
        for kind, name in removed:
            db.execute("UPDATE repos SET present = 0, removed_at = ? WHERE kind = ? AND name = ?",
                       [now, kind, name])
            db.execute("UPDATE tarballs SET superseded_at = ? WHERE kind = ? AND name = ? "
                       "AND superseded_at IS NULL", [now, kind, name])
            db.execute("DELETE FROM branches WHERE kind = ? AND name = ?", [kind, name])
    return removed


def start_run(db: sqlite_utils.Database, options: dict[str, Any]) -> int:
    """Record the start of a sync run (runs left 'running' by a crash become 'interrupted')."""
    with db.atomic():
        db.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
        db["runs"].insert({"started_at": utcnow(), "status": "running", "options": json.dumps(options)})
        return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def finish_run(db: sqlite_utils.Database, run_id: int, summary: dict[str, Any], warnings: list[str]) -> None:
    """Record how a sync run ended and what it warned about."""
    with db.atomic():
        db["runs"].update(run_id, {
            "finished_at": utcnow(),
            "status": "interrupted" if summary.get("interrupted") else "failed" if summary["failed"] else "ok",
            "built": summary["built"], "unchanged": summary["unchanged"],
            "failed": summary["failed"], "seconds": summary["seconds"], "warnings": json.dumps(warnings),
        })


def expired_tarballs(db: sqlite_utils.Database, cutoff: str) -> list[tuple[str, str]]:
    """(kind, file) of tarballs superseded at or before cutoff."""
    return db.execute("SELECT kind, file FROM tarballs WHERE superseded_at IS NOT NULL AND superseded_at <= ? "
                      "ORDER BY kind, file", [cutoff]).fetchall()


def known_tarballs(db: sqlite_utils.Database) -> set[tuple[str, str]]:
    """(kind, file) of every tarball the database knows, current or superseded."""
    return set(db.execute("SELECT kind, file FROM tarballs").fetchall())


def expired_repos(db: sqlite_utils.Database, cutoff: str) -> list[tuple[str, str]]:
    """(kind, name) of repositories that left every source at or before cutoff."""
    return db.execute("SELECT kind, name FROM repos WHERE present = 0 AND removed_at <= ? ORDER BY kind, name",
                      [cutoff]).fetchall()


def forget_tarball(db: sqlite_utils.Database, kind: str, file: str) -> None:
    """Drop a superseded tarball's row (never a current one)."""
    with db.atomic():
        db.execute("DELETE FROM tarballs WHERE kind = ? AND file = ? AND superseded_at IS NOT NULL", [kind, file])


def forget_repo(db: sqlite_utils.Database, kind: str, name: str) -> None:
    """Drop a removed repository's rows."""
    with db.atomic():
        db.execute("DELETE FROM branches WHERE kind = ? AND name = ?", [kind, name])
        db.execute("DELETE FROM repos WHERE kind = ? AND name = ? AND present = 0", [kind, name])
