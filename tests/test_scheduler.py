"""`tardist worker`: scheduled syncs without cron, sharing the sync lock, stopping cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
from helpers import TARDIST

from worker.lock import sync_lock


def start_worker(deployment) -> subprocess.Popen:
    return subprocess.Popen([TARDIST, "worker"], cwd=deployment.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={"TARDIST_CONFIG": str(deployment.config), "PATH": "/usr/bin:/bin"})


class LogLines:
    """The lines a process writes on stderr, read as they come."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        with stream:
            for line in stream:
                self.lines.append(line)

    def wait_for(self, text: str, seconds: float = 60) -> bool:
        return wait_for(lambda: any(text in line for line in self.lines), seconds)

    def text(self) -> str:
        self.thread.join(10)
        return "".join(self.lines)


def wait_for(predicate, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def runs(deployment) -> list[dict]:
    return json.loads(deployment.cli("status").stdout)["runs"]


@pytest.mark.slow
def test_worker_syncs_at_start_and_stops_cleanly_on_sigterm(deployment, upstream):
    upstream("Cite")
    worker = start_worker(deployment)
    try:
        assert wait_for(lambda: any(run["status"] == "ok" for run in runs(deployment)))
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "worker started: sync on '0 * * * *', gc on '30 3 * * *'" in err
    assert "sync finished" in err and "worker stopped" in err
    assert runs(deployment)[0]["built"] == 1


def test_worker_skips_a_sync_while_cron_holds_the_lock(deployment, upstream):
    upstream("Cite")
    with sync_lock(deployment.settings().lock_file):
        worker = start_worker(deployment)
        log = LogLines(worker)
        try:
            assert log.wait_for("sync skipped: another tardist sync is running"), log.text()
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
            worker.stdout.close()
    assert worker.returncode == 0, log.text()
    assert "worker stopped" in log.text()
    assert runs(deployment) == []


def test_sigterm_finishes_the_repository_in_hand_and_skips_the_rest(deployment, upstream, hanging_remote, tmp_path):
    upstream("Echo")
    upstream("Math")
    deployment.write_config(f'[[source]]\nkind = "extensions"\ntype = "list"\n'
                            f'repos = {{ Aaa = "{hanging_remote.url("Aaa")}", '
                            f'Echo = "{tmp_path}/upstream/extensions/Echo", '
                            f'Math = "{tmp_path}/upstream/extensions/Math" }}\n', jobs=1, git_timeout=120)
    worker = start_worker(deployment)
    log = LogLines(worker)
    try:
        assert hanging_remote.connected.wait(60), "the worker started syncing Aaa"
        worker.send_signal(signal.SIGTERM)
        assert log.wait_for("SIGTERM: finishing the repositories in hand, then exiting"), log.text()
        time.sleep(0.5)
        assert worker.poll() is None, "the worker waits for the repository in hand"
    finally:
        hanging_remote.close()
        worker.wait(timeout=60)
        worker.stdout.close()
    err = log.text()
    assert worker.returncode == 0, err
    last = runs(deployment)[0]
    assert last["status"] == "interrupted" and last["built"] == 0 and last["failed"] == 1
    assert "worker stopped" in err


def test_bad_schedule_is_a_config_error(deployment):
    deployment.write_config(schedule="every hour")
    result = deployment.cli("worker", timeout=30)
    assert result.returncode == 2
    assert "key 'schedule': expected a cron expression" in result.stderr
