"""Progress of a sync on stderr: a bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from tardist.info import group_errors
from tardist.records import RepoRecord


def failure_line(record: RepoRecord) -> str:
    """Why a repository failed, each reason once: `master, REL1_45: submodule x: ...; REL1_39: ...`."""
    if record.error:
        return record.error + (f" (not tried again before {record.retry_at})" if record.waiting else "")
    failed = [b for b in record.branches if b.state in ("failed", "waiting")]
    retry_at = {b.branch: b.retry_at for b in failed if b.state == "waiting"}
    parts = []
    for branches, reason in group_errors((b.branch, b.error or "") for b in failed):
        waits = sorted(retry_at[b] for b in branches if b in retry_at)
        parts.append(f"{', '.join(branches)}: {reason}" + (f" (not tried again before {waits[0]})" if waits else ""))
    return "; ".join(parts)


class Progress:
    """Counts synced repositories and shows how far the run is."""

    def __init__(self, stream: TextIO = sys.stderr, interval: float = 10.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval
        self.total = self.done = self.built = self.failed = 0
        self.started = self.last_line = time.monotonic()

    def start(self, total: int) -> None:
        """The run covers total repositories."""
        self.total = total
        self._print(f"syncing {total} repositories")

    def update(self, record: RepoRecord) -> None:
        """One repository is done."""
        self.done += 1
        self.built += sum(branch.state == "built" for branch in record.branches)
        if record.failed:
            self.failed += 1
            self._print(f"FAILED {record.kind}/{record.name}: {failure_line(record)}")
        if self.tty:
            self._draw(f"{record.kind}/{record.name}")
        elif time.monotonic() - self.last_line >= self.interval or self.done == self.total:
            self._print(self._counts())

    def finish(self) -> None:
        """End the bar's line."""
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()

    def _counts(self) -> str:
        elapsed = time.monotonic() - self.started
        return (f"{self.done}/{self.total} repositories, {self.built} tarballs built, "
                f"{self.failed} failed, {elapsed:.0f}s")

    def _draw(self, current: str) -> None:
        width = shutil.get_terminal_size((80, 20)).columns
        counts = self._counts()
        bar_width = max(10, min(40, width - len(counts) - 10))
        filled = bar_width * self.done // max(self.total, 1)
        line = f"[{'#' * filled}{'.' * (bar_width - filled)}] {counts} {current}"
        self.stream.write("\r" + line[:width - 1].ljust(width - 1))
        self.stream.flush()

    def _print(self, line: str) -> None:
        if self.tty and self.done:
            self.stream.write("\r" + " " * (shutil.get_terminal_size((80, 20)).columns - 1) + "\r")
        self.stream.write(line + "\n")
        self.stream.flush()
        self.last_line = time.monotonic()
