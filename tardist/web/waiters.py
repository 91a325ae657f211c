"""How many requests of one web process may wait for an on-demand build at once (`build_waiters`)."""

from __future__ import annotations

import threading
from collections import Counter


class Waiters:
    """How many requests of this process wait for a build, in all and per remote host.

    Each holds one of gunicorn's threads: past `limit` a request is answered 503 at once, so the
    other threads stay free for the API, and one remote host (a slow or silent one) gets at most
    half of them, so requests for the others still wait their turn.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.per_host = max(1, limit // 2)
        self.counts: Counter[str | None] = Counter()  # None: all of them
        self.guard = threading.Lock()

    def enter(self, host: str | None) -> bool:
        """Count one more waiting request for host (None: on this machine); False when there is no room."""
        with self.guard:
            if self.counts[None] >= self.limit or (host is not None and self.counts[host] >= self.per_host):
                return False
            self.counts[None] += 1
            if host is not None:
                self.counts[host] += 1
            return True

    def leave(self, host: str | None) -> None:
        """Count one waiting request fewer."""
        with self.guard:
            self.counts[None] -= 1
            if host is not None:
                self.counts[host] -= 1
