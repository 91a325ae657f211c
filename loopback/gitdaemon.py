"""Serve a folder of bare git repositories with a real `git daemon` on loopback (and stop servers cleanly)."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"


def free_port(port: int = 0) -> int:
    """Return `port` (or, if 0, any loopback TCP port) after checking it is free right now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as error:
            raise RuntimeError(f"cannot serve git on {HOST}:{port}: {error}") from error
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a server process, by force if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def git_daemon(base_path: Path, port: int | None = None, timeout: float = 10.0) -> Iterator[str]:
    """Run `git daemon` exporting every repository under `base_path`; yield its base URL.

    The URL is `git://127.0.0.1:PORT`; a repository at `base_path/a/b.git` is
    cloned from `{url}/a/b.git`. Without `port`, a free port is picked.
    """
    # Checked first so that another server already on `port` is not mistaken for ours.
    port = free_port(port or 0)
    with tempfile.TemporaryFile() as log:
        daemon = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base_path}",
             f"--port={port}", f"--listen={HOST}", "--enable=upload-pack"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + timeout
            while not _accepts(port) or daemon.poll() is not None:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"git daemon did not start on {HOST}:{port}: "
                                       f"{log.read().decode(errors='replace').strip()}")
                time.sleep(0.05)
            yield f"git://{HOST}:{port}"
        finally:
            stop(daemon, timeout=5)
