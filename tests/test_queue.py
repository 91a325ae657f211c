"""The request queue: single-flight merging, recovery after a killed worker, the worker lock."""

from __future__ import annotations

import time

import pytest

from tardist.queue import HEADS, SYNC, Queue, WorkerRunning


@pytest.fixture
def queue(tmp_path) -> Queue:
    return Queue(tmp_path / "instance" / "tardist.queue.sqlite3")


def test_requests_for_a_waiting_repository_merge_and_a_hook_or_force_is_kept(queue):
    first = queue.request(SYNC, "extensions", "Cite", reason="build")
    assert queue.request(SYNC, "extensions", "Cite", reason="hook") == first
    assert queue.request(SYNC, "extensions", "Cite", reason="build", force=True) == first
    assert queue.request(SYNC, "extensions", "Cite", reason="build") == first  # a later plain one keeps --force
    other = queue.request(HEADS, "extensions", "Cite", reason="build")
    assert other != first and queue.request(SYNC, "skins", "Cite") not in (first, other)
    merged = queue.get(first)
    assert (merged.reason, merged.force) == ("hook", True)
    assert [r.key for r in queue.waiting()] == [(SYNC, "extensions", "Cite"), (HEADS, "extensions", "Cite"),
                                                (SYNC, "skins", "Cite")]


def test_a_request_for_a_repository_in_hand_waits_behind_it_once(queue):
    first = queue.request(SYNC, "extensions", "Cite")
    queue.start(first)
    follow_up = queue.request(SYNC, "extensions", "Cite")
    assert follow_up != first and queue.request(SYNC, "extensions", "Cite") == follow_up
    queue.finish(first, {"built": 1})
    assert queue.wait(first, 1).result == {"built": 1}
    assert queue.wait(follow_up, 0.2) is None, "not served yet"


def test_recover_puts_unfinished_requests_back_or_merges_them_into_a_waiting_twin(queue):
    alone = queue.request(SYNC, "extensions", "Cite")
    twin = queue.request(SYNC, "extensions", "Echo")
    queue.start(alone)
    queue.start(twin)
    waiting = queue.request(SYNC, "extensions", "Echo")
    done = queue.request(SYNC, "extensions", "Math")
    queue.start(done)
    queue.finish(done, {"built": 0})
    assert queue.recover() == 2
    assert [r.id for r in queue.waiting()] == [alone, waiting]
    assert queue.get(twin).result == {"merged": True}
    assert queue.get(done).result == {"built": 0}


def test_fresh_heads_are_those_answered_within_the_ttl(queue):
    request = queue.request(HEADS, "extensions", "Cite")
    assert queue.fresh_heads("extensions", "Cite") is None
    queue.start(request)
    queue.finish(request, {"heads": {"master": "a" * 40}})
    assert queue.fresh_heads("extensions", "Cite") == {"heads": {"master": "a" * 40}}
    time.sleep(0.3)
    assert queue.fresh_heads("extensions", "Cite", ttl=0.2) is None
    queue.purge(older_than=0.1)
    assert queue.get(request) is None


def test_one_worker_holds_the_queue(queue):
    assert not queue.worker_running()
    with queue.worker_lock():
        assert queue.worker_running()
        with pytest.raises(WorkerRunning), queue.worker_lock():
            pass
    assert not queue.worker_running()


def test_a_fresh_look_merged_into_a_waiting_heads_request_makes_it_fresh(queue):
    waiting = queue.request(HEADS, "extensions", "Cite", reason="build")
    assert queue.request(HEADS, "extensions", "Cite", reason="fresh") == waiting
    assert queue.request(HEADS, "extensions", "Cite", reason="build") == waiting
    assert queue.get(waiting).reason == "fresh"


def test_fresh_heads_are_the_newest_looked_at_and_trusted_from_when_they_were_looked_at(queue):
    for looked_at, head in ((time.time() - 1, "a"), (time.time() - 3, "b")):  # the older look finishes last
        request = queue.request(HEADS, "extensions", "Cite")
        queue.start(request)
        queue.finish(request, {"heads": {"master": head * 40}, "looked_at": looked_at})
    assert queue.fresh_heads("extensions", "Cite")["heads"] == {"master": "a" * 40}
    assert queue.fresh_heads("extensions", "Cite", ttl=2)["heads"] == {"master": "a" * 40}
    assert queue.fresh_heads("extensions", "Cite", ttl=0.5) is None
