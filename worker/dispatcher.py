"""The request side of `tardist worker`: syncs of one repository and remote head checks, on demand.

Requests come from the queue file (tardist/queue.py). They are served in a pool
of their own, so a requested repository syncs at once even while the scheduled
full sync runs; the repository's lock keeps two syncs of it from overlapping
(across processes too), and a request for a repository already in hand waits in
the queue, merged with any later ones, until the one in hand is done.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tardist import catalog, schema
from tardist.queue import HEADS, HEADS_TTL, SYNC, Queue, Request
from tardist.settings import Settings
from worker.mirror import GitError, remote_heads, use_git_config
from worker.sync import sync_one

log = logging.getLogger("tardist.worker")
POLL_SECONDS = 0.1  # how often the queue is looked at: a cheap indexed query
PURGE_SECONDS = 600.0
HEAD_THREADS = 4


class Dispatcher:
    """Takes requests from the queue and serves them until stopped."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        use_git_config(settings.git_config)  # head checks run git before any sync has set it
        self.settings = settings
        self.stop = stop
        self.queue = Queue(settings.queue_file)
        # Head checks get threads of their own: a request waiting on one must not queue behind builds.
        self.pools = {SYNC: ThreadPoolExecutor(max_workers=settings.jobs, thread_name_prefix="request-sync"),
                      HEADS: ThreadPoolExecutor(max_workers=HEAD_THREADS, thread_name_prefix="request-heads")}
        self.in_hand: set[tuple[str, str, str]] = set()
        self.guard = threading.Lock()
        self.heads_cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def run(self) -> None:
        """Serve requests until stop is set, then wait for those in hand."""
        recovered = self.queue.recover()
        if recovered:
            log.info("requests: %d left unfinished by a stopped worker are back in line", recovered)
        purged = time.monotonic()
        try:
            while not self.stop.is_set():
                for request in self.queue.waiting():
                    with self.guard:
                        if request.key in self.in_hand:
                            continue  # merged: served once the one in hand is done
                        self.in_hand.add(request.key)
                    self.queue.start(request.id)
                    self.pools[request.action].submit(self._serve, request)
                if time.monotonic() - purged > PURGE_SECONDS:
                    self.queue.purge()
                    purged = time.monotonic()
                self.stop.wait(POLL_SECONDS)
        finally:
            # Requests not begun stay marked started: the next worker puts them back in line.
            for pool in self.pools.values():
                pool.shutdown(wait=True, cancel_futures=True)
            self.queue.close()

    def _serve(self, request: Request) -> None:
        try:
            result = self._heads(request) if request.action == HEADS else self._sync(request)
        except Exception as exc:  # a bug must cost this request only, and still answer it
            log.exception("request %d failed", request.id)
            result = {"error": f"internal error: {exc!r}"}
        finally:
            with self.guard:
                self.in_hand.discard(request.key)
        self.queue.finish(request.id, result)

    def _sync(self, request: Request) -> dict[str, Any]:
        # A push names a new head or a fix: try it now, whatever the backoff of an earlier failure.
        # An on-demand build does not: a flood of requests must not retry a failing head each time.
        record = sync_one(self.settings, request.kind, request.name, force=request.force,
                          retry=request.reason == "hook")
        if record is None:
            log.warning("request %d: no source has %s/%s", request.id, request.kind, request.name)
            return {"error": f"no source has {request.kind}/{request.name}"}
        result = {"built": sum(b.state == "built" for b in record.branches),
                  "unchanged": sum(b.state in ("unchanged", "reused") for b in record.branches),
                  "failed": record.failed, "error": record.error}
        log.info("request %d (%s): synced %s/%s: %d built, %d unchanged%s", request.id, request.reason,
                 request.kind, request.name, result["built"], result["unchanged"],
                 f", failed: {record.error or 'a branch'}" if record.failed else "")
        return result

    def _heads(self, request: Request) -> dict[str, Any]:
        """The remote's snapshot branch heads, from one ls-remote shared for HEADS_TTL seconds."""
        key = (request.kind, request.name)
        cached = self.heads_cache.get(key)
        if cached and time.monotonic() - cached[0] < HEADS_TTL:
            return cached[1]
        conn = schema.open_reader(self.settings.database)
        try:
            found = catalog.find(self.settings, conn, request.kind, request.name)
        finally:
            if conn is not None:
                conn.close()
        if found is None:
            result: dict[str, Any] = {"error": f"no source has {request.kind}/{request.name}"}
        else:
            try:
                result = {"heads": remote_heads(found[0], self.settings.branches, self.settings.git_timeout)}
            except GitError as exc:
                result = {"error": str(exc)}
        self.heads_cache[key] = (time.monotonic(), result)
        return result
