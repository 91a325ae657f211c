"""The request side of `tardist worker`: syncs of one repository and remote head checks, on demand.

Requests come from the queue file (tardist/queue.py). They are served in a pool
of their own, so a requested repository syncs at once even while the scheduled
full sync runs; the repository's lock keeps two syncs of it from overlapping
(across processes too), and a request for a repository already in hand waits in
the queue, merged with any later ones, until the one in hand is done.

A remote that never answers must not hold everyone else up: head checks take at
most `heads_timeout`, and a request is only taken when a thread is free for it
at once, with at most half of each pool working on one remote host, so the other
half stays free for the other hosts (the rest wait in the queue, not in a pool).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tardist import catalog, schema
from tardist.queue import HEADS, HEADS_TTL, SYNC, Queue, Request
from tardist.settings import Settings
from worker.git import GitError
from worker.mirror import remote_heads
from worker.run import sync_one

log = logging.getLogger("tardist.worker")
POLL_SECONDS = 0.1  # how often the queue is looked at: a cheap indexed query
PURGE_SECONDS = 600.0
HEAD_THREADS = 8


class Dispatcher:
    """Takes requests from the queue and serves them until stopped."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        self.settings = settings
        self.stop = stop
        self.queue = Queue(settings.queue_file)
        # Head checks get threads of their own: a request waiting on one must not queue behind builds.
        self.threads = {SYNC: settings.jobs, HEADS: HEAD_THREADS}
        self.per_host = {action: max(1, threads // 2) for action, threads in self.threads.items()}
        self.pools = {action: ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"request-{action}")
                      for action, threads in self.threads.items()}
        self.in_hand: set[tuple[str, str, str]] = set()
        self.busy: Counter[tuple[str, str | None]] = Counter()  # (action, host) and (action, None): in hand
        self.hosts: dict[tuple[str, str], str | None] = {}
        self.guard = threading.Lock()
        self.heads_cache: dict[tuple[str, str], dict[str, Any]] = {}

    def run(self) -> None:
        """Serve requests until stop is set, then wait for those in hand."""
        recovered = self.queue.recover()
        if recovered:
            log.info("requests: %d left unfinished by a stopped worker are back in line", recovered)
        purged = time.monotonic()
        try:
            while not self.stop.is_set():
                for request in self.queue.waiting():
                    host = self._host(request.kind, request.name)
                    with self.guard:
                        if not self._free(request, host):
                            continue  # waits in the queue, merged with later requests, until it can run at once
                        self.in_hand.add(request.key)
                        self.busy[request.action, None] += 1
                        if host is not None:
                            self.busy[request.action, host] += 1
                    self.queue.start(request.id)
                    self.pools[request.action].submit(self._serve, request, host)
                if time.monotonic() - purged > PURGE_SECONDS:
                    self.queue.purge()
                    purged = time.monotonic()
                self.stop.wait(POLL_SECONDS)
        finally:
            # Requests not begun stay marked started: the next worker puts them back in line.
            for pool in self.pools.values():
                pool.shutdown(wait=True, cancel_futures=True)
            self.queue.close()

    def _free(self, request: Request, host: str | None) -> bool:
        """True when request can run now: its repository is not in hand, a thread is free, and its host has
        fewer than half of them (called under the guard)."""
        if request.key in self.in_hand or self.busy[request.action, None] >= self.threads[request.action]:
            return False
        return host is None or self.busy[request.action, host] < self.per_host[request.action]

    def _host(self, kind: str, name: str) -> str | None:
        """The remote host of a repository (None: on this machine, or unknown), remembered once found."""
        key = (kind, name)
        if key not in self.hosts:
            conn = schema.open_reader(self.settings.database)
            try:
                found = catalog.find(self.settings, conn, kind, name)
            finally:
                if conn is not None:
                    conn.close()
            if found is None:
                return None  # answered at once with an error; asked again if the repository appears
            self.hosts[key] = catalog.remote_host(found[0])
        return self.hosts[key]

    def _serve(self, request: Request, host: str | None) -> None:
        try:
            result = self._heads(request) if request.action == HEADS else self._sync(request)
        except Exception as exc:  # a bug must cost this request only, and still answer it
            log.exception("request %d failed", request.id)
            result = {"error": f"internal error: {exc!r}"}
        finally:
            with self.guard:
                self.in_hand.discard(request.key)
                self.busy[request.action, None] -= 1
                if host is not None:
                    self.busy[request.action, host] -= 1
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
                  "failed": record.failed, "error": record.error,
                  "heads": {b.branch: b.commit for b in record.branches}}  # what a build on demand waited for
        log.info("request %d (%s): synced %s/%s: %d built, %d unchanged%s", request.id, request.reason,
                 request.kind, request.name, result["built"], result["unchanged"],
                 f", failed: {record.error or 'a branch'}" if record.failed else "")
        return result

    def _heads(self, request: Request) -> dict[str, Any]:
        """The remote's snapshot branch heads, from one ls-remote shared for HEADS_TTL seconds.

        A 'fresh' request comes from a sha7 that matched no head of an answer older than itself: it is
        never answered from the cache (the queue merges such requests, so one ls-remote serves them all).
        """
        key = (request.kind, request.name)
        cached = self.heads_cache.get(key)
        if cached and request.reason != "fresh" and time.time() - cached["looked_at"] < HEADS_TTL:
            return cached
        conn = schema.open_reader(self.settings.database)
        try:
            found = catalog.find(self.settings, conn, request.kind, request.name)
        finally:
            if conn is not None:
                conn.close()
        looked_at = time.time()
        if found is None:
            result: dict[str, Any] = {"error": f"no source has {request.kind}/{request.name}"}
        else:
            try:
                result = {"heads": remote_heads(found[0], self.settings.branches, self.settings.heads_timeout,
                                                   self.settings.git_config, self.settings.directory_folders)}
            except GitError as exc:
                result = {"error": str(exc)}
        # Settled: a fresh look found the heads as they were, so a sha7 that matches none is made up and
        # waits out HEADS_TTL; heads that moved (a push) leave the next miss its own fresh look.
        result.update(looked_at=looked_at, settled=request.reason == "fresh"
                      and (cached is None or cached.get("heads") == result.get("heads")))
        self.heads_cache[key] = result
        return result
