"""The worker's side of the database: what a sync learned, written one transaction per repository.

Records (what a sync learned) are in `tardist.records`, the backoff policy in `tardist.backoff`.

The worker is the only writer; the schema lives in `tardist.schema`, the
web app's reads in `tardist.queries`, the worker's own reads in `worker.recorded`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlite_utils

from tardist.answers import encode
from tardist.backoff import retry_heads_key, retry_time
from tardist.info import InfoView, facts_branch, render_info
from tardist.records import BranchRecord, RepoRecord
from tardist.schema import write_transaction
from tardist.timestamps import utcnow


def save_repo(db: sqlite_utils.Database, record: RepoRecord, view: InfoView) -> None:
    """Record one repository's sync, and its rendered /info answer, in a single transaction."""
    now = utcnow()
    with write_transaction(db):
        db["repos"].upsert({
            "kind": record.kind, "name": record.name, "repository": record.repository,
            "present": 1, "removed_at": None, "checked_at": now, "error": record.error, "source": record.source,
            **_repo_backoff(db, record),
        }, pk=("kind", "name"))
        for branch in record.branches:
            _save_branch(db, record, branch, now)
        for branch in record.gone:
            db.execute("DELETE FROM branches WHERE kind = ? AND name = ? AND branch = ?",
                       [record.kind, record.name, branch])
            db.execute("DELETE FROM descriptions WHERE kind = ? AND name = ? AND branch = ?",
                       [record.kind, record.name, branch])
            _supersede(db, record.kind, record.name, branch, keep="", now=now)
        _render(db, view, record.kind, record.name)


def _repo_backoff(db: sqlite_utils.Database, record: RepoRecord) -> dict[str, Any]:
    """The backoff columns of a repository after this sync: only a failed fetch backs off.

    `ls-remote` is the floor of every run and is how a moved head is noticed, so
    it is always tried; a fetch that failed for some heads is not tried again for
    the same heads before its retry time.
    """
    if record.waiting:
        return {}
    if record.error is None or record.retry_heads is None:
        return {"failures": None, "retry_at": None, "retry_heads": None}
    heads = retry_heads_key(record.retry_heads)
    row = db.execute("SELECT failures, retry_heads FROM repos WHERE kind = ? AND name = ?",
                     [record.kind, record.name]).fetchone()
    failures = (row[0] or 0) + 1 if row and row[1] == heads else 1
    return {"failures": failures, "retry_at": retry_time(failures), "retry_heads": heads}


def clear_backoff_if_changed(db: sqlite_utils.Database, settings_key: str) -> None:
    """Retry everything at once when the settings a failure may depend on changed (an operator's fix)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'retry_settings'").fetchone()
    if row and row[0] == settings_key:
        return
    with write_transaction(db):
        db.execute("UPDATE repos SET retry_at = NULL WHERE retry_at IS NOT NULL")
        db.execute("UPDATE branches SET retry_at = NULL WHERE retry_at IS NOT NULL")
        db["meta"].upsert({"key": "retry_settings", "value": settings_key}, pk="key")


def _render(db: sqlite_utils.Database, view: InfoView, kind: str, name: str) -> None:
    repo = next(db.query("SELECT * FROM repos WHERE kind = ? AND name = ?", [kind, name]))
    branches = list(db.query("SELECT * FROM branches WHERE kind = ? AND name = ?", [kind, name]))
    db.execute("UPDATE repos SET info = ?, facts_branch = ? WHERE kind = ? AND name = ?",
               [encode(render_info(view, repo, branches)).decode(), facts_branch(view, branches), kind, name])


def ensure_rendered(db: sqlite_utils.Database, view: InfoView) -> bool:
    """Render every /info answer again if the settings they depend on changed since; True if it did."""
    row = db.execute("SELECT value FROM meta WHERE key = 'info_view'").fetchone()
    if row and row[0] == view.key:
        return False
    with write_transaction(db):
        for kind, name in db.execute("SELECT kind, name FROM repos").fetchall():
            _render(db, view, kind, name)
        db["meta"].upsert({"key": "info_view", "value": view.key}, pk="key")
    return True


def _save_branch(db: sqlite_utils.Database, record: RepoRecord, branch: BranchRecord, now: str) -> None:
    key = {"kind": record.kind, "name": record.name, "branch": branch.branch}
    if branch.state == "waiting":
        return
    if branch.state == "failed":
        row = db.execute("SELECT failures, error_commit FROM branches WHERE kind = ? AND name = ? AND branch = ?",
                         [record.kind, record.name, branch.branch]).fetchone()
        failures = (row[0] or 0) + 1 if row and row[1] == branch.commit else 1
        db["branches"].upsert({**key, "error": branch.error, "error_commit": branch.commit,
                               "failures": failures, "retry_at": retry_time(failures)},
                              pk=("kind", "name", "branch"))
        return
    if branch.state == "unchanged":
        db.execute("UPDATE branches SET error = NULL, error_commit = NULL, failures = NULL, retry_at = NULL "
                   "WHERE kind = ? AND name = ? AND branch = ? AND error IS NOT NULL",
                   [record.kind, record.name, branch.branch])
        return
    db["branches"].upsert({
        **key, "commit_sha": branch.commit, "committed_at": branch.committed_at,
        "tarball": branch.tarball, "size": branch.size, "sha256": branch.sha256, "built_at": branch.built_at or now,
        "manifest": json.dumps(branch.manifest) if branch.manifest is not None else None,
        "manifest_errors": json.dumps(branch.manifest_errors),
        "warnings": json.dumps(branch.warnings), "error": None, "error_commit": None,
        "failures": None, "retry_at": None, "vendor": json.dumps(branch.vendor),
    }, pk=("kind", "name", "branch"))
    _supersede(db, record.kind, record.name, branch.branch, keep=branch.tarball, now=now)
    db.execute("DELETE FROM descriptions WHERE kind = ? AND name = ? AND branch = ?",
               [record.kind, record.name, branch.branch])
    db.conn.executemany("INSERT INTO descriptions (kind, name, branch, lang, description) VALUES (?, ?, ?, ?, ?)",
                   [(record.kind, record.name, branch.branch, lang, text)
                    for lang, text in sorted(branch.descriptions.items())])
    db["tarballs"].upsert({
        "kind": record.kind, "file": branch.tarball, "name": record.name, "branch": branch.branch,
        "commit_sha": branch.commit, "sha256": branch.sha256, "size": branch.size,
        "built_at": branch.built_at or now, "superseded_at": None, "modules": json.dumps(branch.modules),
        "vendor": json.dumps(branch.vendor),
    }, pk=("kind", "file"))


def _supersede(db: sqlite_utils.Database, kind: str, name: str, branch: str, keep: str, now: str) -> None:
    db.execute("UPDATE tarballs SET superseded_at = ? WHERE kind = ? AND name = ? AND branch = ? "
               "AND file != ? AND superseded_at IS NULL", [now, kind, name, branch, keep])


def mark_removed(db: sqlite_utils.Database, present: Iterable[tuple[str, str]],
                 keep_sources: Iterable[str] = (), listed_at: str | None = None) -> list[tuple[str, str]]:
    """Mark repositories no source lists any more as removed and return them.

    Those listed last by a source of keep_sources are kept (and, recorded before tardist knew
    sources, those of the same kind as one of them), and so are those recorded after listed_at,
    when present was listed: a single-repository sync beside the run found them since. (Times
    are to the second: one recorded in the very second of the listing is not told apart.)
    """
    present = set(present)
    keep_sources = set(keep_sources)
    keep_kinds = {key.split(" ", 1)[0] for key in keep_sources}
    now = utcnow()
    with write_transaction(db):  # read under the lock too: a sync beside the run may record one meanwhile
        removed = [(kind, name) for kind, name, source, checked in
                   db.execute("SELECT kind, name, source, checked_at FROM repos WHERE present = 1").fetchall()
                   if (kind, name) not in present and source not in keep_sources
                   and not (source is None and kind in keep_kinds) and not (listed_at and checked > listed_at)]
        for kind, name in removed:
            db.execute("UPDATE repos SET present = 0, removed_at = ? WHERE kind = ? AND name = ?",
                       [now, kind, name])
            db.execute("UPDATE tarballs SET superseded_at = ? WHERE kind = ? AND name = ? "
                       "AND superseded_at IS NULL", [now, kind, name])
            db.execute("DELETE FROM branches WHERE kind = ? AND name = ?", [kind, name])
            db.execute("DELETE FROM descriptions WHERE kind = ? AND name = ?", [kind, name])
    return removed


def start_run(db: sqlite_utils.Database, options: dict[str, Any], exclusive: bool = True) -> int:
    """Record the start of a sync run.

    An exclusive run (one holding the sync lock) also marks runs left 'running' by a
    crash 'interrupted'; a run of a few repositories may run beside others, so it does not.
    """
    with write_transaction(db):
        if exclusive:
            db.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
        db["runs"].insert({"started_at": utcnow(), "status": "running", "options": json.dumps(options)})
        return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def finish_run(db: sqlite_utils.Database, run_id: int, status: str, summary: dict[str, Any],
               warnings: list[str]) -> None:
    """Record how a sync run ended (its status, its counts) and what it warned about."""
    with write_transaction(db):
        db["runs"].update(run_id, {
            "finished_at": utcnow(), "status": status,
            "built": summary["built"], "unchanged": summary["unchanged"],
            "failed": summary["failed"], "seconds": summary["seconds"], "warnings": json.dumps(warnings),
        })


def forget_tarball(db: sqlite_utils.Database, kind: str, file: str) -> None:
    """Drop a superseded tarball's row (never a current one)."""
    with write_transaction(db):
        db.execute("DELETE FROM tarballs WHERE kind = ? AND file = ? AND superseded_at IS NOT NULL", [kind, file])


def forget_repo(db: sqlite_utils.Database, kind: str, name: str) -> None:
    """Drop a removed repository's rows."""
    with write_transaction(db):
        db.execute("DELETE FROM branches WHERE kind = ? AND name = ?", [kind, name])
        db.execute("DELETE FROM descriptions WHERE kind = ? AND name = ?", [kind, name])
        db.execute("DELETE FROM repos WHERE kind = ? AND name = ? AND present = 0", [kind, name])
