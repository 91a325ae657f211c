"""`tardist worker` serving requests: queued while it is down, surviving SIGKILL, beside a full sync."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
from helpers import TARDIST, Worker, directory_source, wait_done

from tardist.layout import repo_lock_path
from tardist.queue import HEADS, SYNC, Queue
from worker.dispatcher import Dispatcher
from worker.lock import file_lock, sync_lock


@pytest.mark.slow
def test_a_request_made_while_the_worker_is_down_is_served_once_even_across_a_sigkill(
        deployment, upstream, hanging_remote, tmp_path):
    cite = upstream("Cite")
    deployment.write_config(directory_source("extensions", tmp_path / "upstream/extensions")
                            + f'\n[[source]]\nkind = "skins"\ntype = "list"\n'
                              f'repos = {{ Aaa = "{hanging_remote.url("Aaa")}" }}\n', git_timeout=3)
    deployment.sync(check=False)
    new_head = cite.commit({"NEWS": "more\n"})
    queue = Queue(deployment.settings().queue_file)
    cite_request = queue.request(SYNC, "extensions", "Cite", reason="hook")
    hanging_request = queue.request(SYNC, "skins", "Aaa", reason="hook")
    log = tmp_path / "worker.log"
    # Held here, the sync lock keeps the worker's own full sync from serving what was asked.
    with sync_lock(deployment.settings().lock_file):
        worker = Worker(deployment, log)
        try:
            assert wait_done(queue, cite_request).result == {"built": 1, "unchanged": 0, "failed": False,
                                                             "error": None, "heads": {"master": new_head}}
            assert hanging_remote.connected.wait(30), "the worker started on Aaa"
        finally:
            worker.stop(signal.SIGKILL)
        assert queue.get(hanging_request).started_at is not None and queue.get(hanging_request).done_at is None
        info = json.loads(deployment.app().test_client().get("/info/extensions/Cite").data)
        assert info["branches"]["master"]["commit"] == new_head

        worker = Worker(deployment, log)
        try:
            worker.wait_for("1 left unfinished by a stopped worker are back in line")
            answered = wait_done(queue, hanging_request)
            assert answered.result["failed"] and "timed out" in answered.result["error"]
        finally:
            worker.stop()
    assert "synced extensions/Cite" not in worker.text(), "a request served before the kill is not served again"
    assert log.read_text().count("synced extensions/Cite") == 1


@pytest.mark.slow
def test_a_requested_repository_syncs_while_a_full_sync_is_stuck_and_only_works_beside_it(
        deployment, upstream, hanging_remote, tmp_path):
    cite = upstream("Cite")
    deployment.write_config(directory_source("extensions", tmp_path / "upstream/extensions")
                            + f'\n[[source]]\nkind = "skins"\ntype = "list"\n'
                              f'repos = {{ Aaa = "{hanging_remote.url("Aaa")}" }}\n', git_timeout=60, jobs=1)
    deployment.sync("--only", "Cite")
    worker = Worker(deployment, tmp_path / "worker.log")
    try:
        assert hanging_remote.connected.wait(30), "the full sync is stuck on Aaa"
        queue = Queue(deployment.settings().queue_file)
        head = cite.commit({"NEWS": "one\n"})
        assert wait_done(queue, queue.request(SYNC, "extensions", "Cite"), 30).result["built"] == 1
        # The command line too: --only needs the repository's lock only, not the full run's.
        head = cite.commit({"NEWS": "two\n"})
        result = deployment.sync("--only", "Cite", timeout=60)
        assert deployment.summary(result)["built"] == 1
        info = json.loads(deployment.app().test_client().get("/info/extensions/Cite").data)
        assert info["branches"]["master"]["commit"] == head
        assert json.loads(deployment.cli("status").stdout)["runs"][1]["status"] == "running"
    finally:
        hanging_remote.close()
        worker.stop()


def test_only_waits_for_another_sync_of_the_same_repository(deployment, upstream):
    upstream("Cite")
    settings = deployment.settings()
    with file_lock(repo_lock_path(settings, "extensions", "Cite")):
        process = subprocess.Popen([TARDIST, "sync", "--only", "Cite"], cwd=deployment.root,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "TARDIST_CONFIG": str(deployment.config)})
        said = [process.stderr.readline()]  # tardist's own words: the run has begun
        while said[-1] and not said[-1].startswith("syncing 1 repositories"):
            said.append(process.stderr.readline())
        assert said[-1], f"the sync ended before it began: {''.join(said)}"
        time.sleep(0.5)
        assert process.poll() is None, "it waits for the repository's lock"
        assert not (settings.tarballs / "extensions").exists()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["built"] == 1


def test_a_second_worker_refuses_to_start(deployment, tmp_path):
    worker = Worker(deployment, tmp_path / "worker.log")
    try:
        result = deployment.cli("worker", timeout=30)
        assert result.returncode == 2 and "another tardist worker is running" in result.stderr
    finally:
        worker.stop()


def test_a_request_for_a_repository_in_hand_is_not_started_beside_it(deployment, upstream):
    upstream("Cite")
    settings = deployment.settings()
    stop = threading.Event()
    dispatcher = Dispatcher(settings, stop)
    thread = threading.Thread(target=dispatcher.run)
    thread.start()
    queue = Queue(settings.queue_file)
    try:
        with file_lock(repo_lock_path(settings, "extensions", "Cite")):  # the first sync holds on here
            first = queue.request(SYNC, "extensions", "Cite", reason="hook")
            deadline = time.monotonic() + 30
            while queue.get(first).started_at is None:
                assert time.monotonic() < deadline, "the first request was not taken"
                time.sleep(0.05)
            second = queue.request(SYNC, "extensions", "Cite", reason="hook", force=True)
            time.sleep(1)  # ten looks at the queue
            assert queue.get(second).started_at is None, "it waits for the one in hand"
        assert wait_done(queue, first).result["built"] == 1
        assert wait_done(queue, second).result["built"] == 1  # the forced one, after it
    finally:
        stop.set()
        thread.join(60)
        queue.close()


def test_a_remote_that_never_answers_costs_a_head_check_heads_timeout_not_git_timeout(
        deployment, hanging_remote, tmp_path):
    deployment.write_config(f'\n[[source]]\nkind = "skins"\ntype = "list"\n'
                            f'repos = {{ Aaa = "{hanging_remote.url("Aaa")}" }}\n',
                            git_timeout=120, heads_timeout=2, schedule="0 0 1 1 *")
    queue = Queue(deployment.settings().queue_file)
    # Held here, the sync lock keeps the worker's own full sync away: these are the requests' own checks.
    with sync_lock(deployment.settings().lock_file):
        worker = Worker(deployment, tmp_path / "worker.log")
        try:
            started = time.monotonic()
            heads = queue.request(HEADS, "skins", "Aaa", reason="build")
            sync = queue.request(SYNC, "skins", "Aaa", reason="hook")
            assert "timed out after 2 seconds" in wait_done(queue, heads, 30).result["error"]
            assert "timed out after 2 seconds" in wait_done(queue, sync, 30).result["error"]
            assert time.monotonic() - started < 15
        finally:
            worker.stop()
