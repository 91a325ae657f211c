"""Writers side by side: every one waits its turn for SQLite's write lock, and a write that cannot wait
long enough costs its repository, never the run."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import TARDIST, Worker, directory_source, wait_done

from tardist import schema
from tardist.queue import SYNC, Queue
from tardist.settings import Settings
from worker.publish import published_files
from worker.run import run_sync


def hold_write_lock(database: Path) -> sqlite3.Connection:
    """A connection holding the database's write lock, as another process's long write would."""
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE runs SET options = options")
    return conn


def start(deployment, *args: str) -> subprocess.Popen:
    return subprocess.Popen([TARDIST, *args], cwd=deployment.root, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TARDIST_CONFIG": str(deployment.config)})


def stale_published(settings: Settings) -> list[str]:
    """Files of published/ that differ from what the database answers now, are missing, or are extra."""
    assert settings.published is not None
    conn = schema.open_reader(settings.database)
    assert conn is not None
    try:
        wanted = {path: body for path, (_url, body) in published_files(settings, conn).items()}
    finally:
        conn.close()
    present = {path.relative_to(settings.published).as_posix(): path.read_bytes()
               for path in settings.published.rglob("*") if path.is_file()}
    return sorted(path for path in wanted.keys() | present.keys() if wanted.get(path) != present.get(path))


def test_a_sync_waits_for_a_write_in_progress_instead_of_failing(deployment, upstream):
    upstream("Cite")
    deployment.sync()
    database = deployment.settings().database
    holder = hold_write_lock(database)
    try:
        process = start(deployment, "sync", "--only", "Cite", "--force")
        time.sleep(2)
        assert process.poll() is None, "it waits for the write lock"
    finally:
        holder.execute("COMMIT")
        holder.close()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["built"] == 1
    assert "Traceback" not in err


def test_a_record_the_database_refuses_fails_that_repository_and_the_run_still_ends(deployment, upstream):
    upstream("Cite")
    deployment.write_config(database_timeout=1)
    settings = deployment.settings()
    schema.open_writer(settings.database).close()
    holders: list[sqlite3.Connection] = []
    records = []

    def lock_the_database(total: int) -> None:  # the run has started: its records will find it locked
        holders.append(hold_write_lock(settings.database))

    def let_go(record) -> None:
        records.append(record)
        holders.pop().execute("COMMIT")

    summary = run_sync(settings, on_start=lock_the_database, on_repo=let_go)
    assert summary.repositories == 1 and summary.failed == 1 and summary.built == 0
    assert records[0].error.startswith("could not record this sync: database is locked")
    with sqlite3.connect(settings.database) as conn:
        assert conn.execute("SELECT status, finished_at IS NOT NULL FROM runs").fetchall() == [("failed", 1)]
        assert conn.execute("SELECT count(*) FROM repos").fetchone()[0] == 0
    assert stale_published(settings) == []
    # Nothing was recorded, so the next run does it again.
    summary = run_sync(settings)
    assert summary.built == 1 and summary.failed == 0
    assert (settings.published / "info/extensions/Cite.json").is_file()
    assert stale_published(settings) == []


@pytest.mark.slow
def test_worker_requests_syncs_a_full_sync_gc_and_stats_ingest_side_by_side(deployment, upstream, tmp_path):
    names = [f"E{index}" for index in range(6)]
    repos = {name: upstream(name) for name in names}
    deployment.write_config(directory_source("extensions", tmp_path / "upstream/extensions"),
                            jobs=2, retention_days=0)
    deployment.sync()
    heads = {name: repo.commit({"NEWS": "moved\n"}) for name, repo in repos.items()}
    log = tmp_path / "access.log"
    stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S %z")
    log.write_text("".join(f'198.51.100.{i % 200} - - [{stamp}] "GET /dist/extensions/E{i % 6}-master-0123abc.tar.gz '
                           f'HTTP/1.1" 200 4242 "-" "curl/8.5.0"\n' for i in range(3000)))
    worker = Worker(deployment, tmp_path / "worker.log")  # it starts with a full sync of its own
    try:
        queue = Queue(deployment.settings().queue_file)
        requests = [queue.request(SYNC, "extensions", name, reason="hook") for name in names[:3]]
        processes = [start(deployment, "sync", "--only", name) for name in names[3:]]
        processes += [start(deployment, "sync"), start(deployment, "gc"),
                      start(deployment, "stats", "ingest", "--batch-lines", "50", str(log))]
        requests += [queue.request(SYNC, "extensions", name, reason="hook", force=True) for name in names[:3]]
        outcomes = [(process.args, *process.communicate(timeout=300), process.returncode) for process in processes]
        answers = [wait_done(queue, request_id, 300).result for request_id in requests]
        queue.close()
    finally:
        worker.stop()
    for args, _out, err, status in outcomes:
        assert status == 0 and "Traceback" not in err, (args, err)
    assert all(answer.get("error") is None and not answer.get("failed") for answer in answers), answers
    assert "Traceback" not in worker.text() and "database is locked" not in worker.text()
    settings = deployment.settings()
    with sqlite3.connect(settings.database) as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE status != 'ok'").fetchone()[0] == 0
        assert dict(conn.execute("SELECT name, commit_sha FROM branches WHERE branch = 'master'")) == heads
        assert conn.execute("SELECT sum(count) FROM downloads").fetchone()[0] == 3000
    assert stale_published(settings) == []
