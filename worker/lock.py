"""Locks: one full sync at a time (cron, worker mode, a person), and one sync per repository."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_held = threading.local()  # the file_lock descriptors the current thread holds


class AlreadyRunning(Exception):
    """Another sync holds the lock."""


@contextmanager
def sync_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on path, or raise AlreadyRunning at once.

    The kernel drops the lock when the process dies, so a crash never leaves it stuck.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            raise AlreadyRunning(f"another tardist sync is running (pid {holder or 'unknown'}, lock {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on path, waiting for whoever holds it (one sync per repository, one
    fetch per submodule mirror, one publish at a time).

    flock locks belong to an open file, so threads of one process exclude each other too.
    The git processes the thread starts meanwhile share the open file (``held_locks``): the
    lock is free again only when tardist *and* every git it started under it are gone.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    held = _held.__dict__.setdefault("fds", [])
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
        yield
    finally:
        if fd in held:
            held.remove(fd)
        os.close(fd)


def held_locks() -> tuple[int, ...]:
    """The descriptors of the file locks the current thread holds, for the processes it starts to share."""
    return tuple(getattr(_held, "fds", ()))


def process_alive(pid: int) -> bool:
    """True when a process with this id runs (what a temporary file or folder named by pid belongs to)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's: alive
    return True
