"""Git remotes on loopback that misbehave: one that never answers, one that hangs in the fetch; a closed port."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from loopback.gitdaemon import HOST


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


class HangingFetchServer:
    """A git:// proxy to a real git daemon that passes on the first `answered` connections
    (an `ls-remote`) and holds every later one (the fetch) silent until released."""

    def __init__(self, daemon_url: str, answered: int = 1) -> None:
        self.target = ("127.0.0.1", int(daemon_url.rsplit(":", 1)[1]))
        self.answered = answered
        self.held: list[socket.socket] = []
        self.fetching = threading.Event()
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="hanging-fetch", daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        """The URL of a repository of the daemon, through this proxy."""
        return f"git://{HOST}:{self.port}/{path}"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn = self.listener.accept()[0]
            except (TimeoutError, OSError):
                continue
            if self.answered > 0:
                self.answered -= 1
                threading.Thread(target=self._forward, args=(conn,), daemon=True).start()
            else:
                self.held.append(conn)
                self.fetching.set()

    def _forward(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self.target) as upstream:
            def pump(src: socket.socket, dst: socket.socket) -> None:
                try:
                    while data := src.recv(65536):
                        dst.sendall(data)
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            back = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
            back.start()
            pump(conn, upstream)
            back.join(10)

    def close(self) -> None:
        """Stop accepting; drop the held connections."""
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()
        for conn in self.held:
            conn.close()

