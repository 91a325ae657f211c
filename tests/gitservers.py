"""Loopback git servers for tests: a real `git daemon`, one that never answers, a closed port."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Iterator

from bench.gitdaemon import HOST, RefusingGitServer, git_daemon  # the benchmark's servers, shared

__all__ = ["closed_port", "git_daemon", "RefusingGitServer", "SilentServer", "silent_server"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class SilentServer:
    """A loopback TCP server that accepts every connection and says nothing until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.connected = threading.Event()
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        """A git:// URL of a repository on this server."""
        return f"git://{HOST}:{self.port}/{name}.git"

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        held = []
        while not self.release.is_set():
            try:
                held.append(self.listener.accept()[0])
            except (TimeoutError, OSError):
                continue
            self.connected.set()
        for conn in held:
            conn.close()

    def close(self) -> None:
        """Release every held connection and stop listening."""
        self.release.set()
        self.thread.join(5)
        self.listener.close()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A SilentServer for the duration of a block; yield its port."""
    server = SilentServer()
    try:
        yield server.port
    finally:
        server.close()
