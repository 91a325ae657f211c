"""Git remotes on loopback that misbehave: one that never answers, one that refuses, one that hangs in the
fetch; a closed port. Each is a LoopbackServer that handles the connections it accepts its own way."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from loopback.gitdaemon import HOST


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class LoopbackServer:
    """A TCP server on loopback whose thread hands every connection to `accepted` until `close`.

    Subclasses set their own state before calling `__init__`: the first connection may come at once.
    """

    name = "loopback-server"

    def __init__(self, port: int = 0) -> None:
        self.stopped = threading.Event()
        self.listener = socket.create_server((HOST, port))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        """A git:// URL of a repository on this server."""
        return f"git://{HOST}:{self.port}/{name}.git"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn = self.listener.accept()[0]
            except (TimeoutError, OSError):
                continue
            self.accepted(conn)

    def accepted(self, conn: socket.socket) -> None:
        """Handle one connection (in the server's thread: hand long work to another)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop accepting."""
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()


class SilentServer(LoopbackServer):
    """Accepts every connection and says nothing until closed."""

    name = "silent-server"

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.held: list[socket.socket] = []
        super().__init__()

    def accepted(self, conn: socket.socket) -> None:
        self.held.append(conn)
        self.connected.set()

    def close(self) -> None:
        """Release every held connection and stop listening."""
        super().close()
        for conn in self.held:
            conn.close()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A SilentServer for the duration of a block; yield its port."""
    server = SilentServer()
    try:
        yield server.port
    finally:
        server.close()


class RefusingGitServer(LoopbackServer):
    """A git:// server that refuses every request with the same ERR line, after `delay` seconds.

    Every fetch from it fails, as from a host that is slow to say no; `connections` counts the requests.
    """

    name = "refusing-git-server"

    def __init__(self, port: int = 0, delay: float = 0.0) -> None:
        self.delay = delay
        self.connections = 0
        super().__init__(port)

    def accepted(self, conn: socket.socket) -> None:
        self.connections += 1
        threading.Thread(target=self._refuse, args=(conn,), daemon=True).start()

    def _refuse(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5 + self.delay)
            try:
                conn.recv(65536)  # the client's request line, read so that it hears the answer
                time.sleep(self.delay)
                message = b"ERR access denied by the test server\n"
                conn.sendall(b"%04x" % (len(message) + 4) + message)
            except OSError:
                pass


class HangingFetchServer(LoopbackServer):
    """A git:// proxy to a real git daemon that passes on the first `answered` connections
    (an `ls-remote`) and holds every later one (the fetch) silent until closed."""

    name = "hanging-fetch"

    def __init__(self, daemon_url: str, answered: int = 1) -> None:
        self.target = ("127.0.0.1", int(daemon_url.rsplit(":", 1)[1]))
        self.answered = answered
        self.held: list[socket.socket] = []
        self.fetching = threading.Event()
        super().__init__()

    def accepted(self, conn: socket.socket) -> None:
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
        super().close()
        for conn in self.held:
            conn.close()
