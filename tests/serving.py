"""Serving as in production, for the tests that need it: gunicorn running wsgi:app with deploy/gunicorn.conf.py,
nginx with a site of deploy/, plain HTTP requests to them on loopback."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import Deployment

from loopback.gitdaemon import free_port, stop

__all__ = ["GUNICORN", "HOST", "NGINX", "ROOT", "Answer", "fetch", "free_port", "needs_nginx", "nginx_main_config",
           "render_site", "running_nginx", "site_values", "start_gunicorn", "wait_until_serving"]

ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
HOST = "127.0.0.1"

needs_nginx = pytest.mark.skipif(not os.access(NGINX, os.X_OK),
                                 reason="nginx is not installed (Debian: apt install nginx-light; CI installs it)")


@dataclass
class Answer:
    """One HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        """The body decoded as JSON."""
        return json.loads(self.body)


def fetch(port: int, path: str, method: str = "GET", **headers: str) -> Answer:
    """GET (or method) path from 127.0.0.1:port, without following redirects."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def wait_until_serving(process: subprocess.Popen, port: int, log: Path, timeout: float = 20) -> None:
    """Wait until the process answers HTTP on port; fail with its log if it dies or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"{process.args[0]} exited with {process.returncode}:\n{log.read_text()}")
        try:
            fetch(port, "/dist/")
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{process.args[0]} did not answer on port {port} in {timeout} s:\n{log.read_text()}")
            time.sleep(0.1)


def start_gunicorn(deployment: Deployment, port: int, log: Path) -> subprocess.Popen:
    """gunicorn serving wsgi:app for the deployment with the shipped settings (2 workers), answering on port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [GUNICORN, "-c", "deploy/gunicorn.conf.py", "--bind", f"{HOST}:{port}", "--workers", "2", "wsgi:app"],
            cwd=ROOT, env={**env, "TARDIST_CONFIG": str(deployment.config)},
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(process, port, log)
    except BaseException:
        stop(process)
        raise
    return process


def render_site(values: dict[str, str], site: str = "deploy/nginx.conf") -> str:
    """An nginx site of deploy/ with its @PLACEHOLDERS@ filled in."""
    text = (ROOT / site).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    assert not re.search(r"@[A-Z_]+@", text), "every placeholder is documented and filled"
    return text


def nginx_main_config(tmp: Path, *sites: Path, worker_connections: int = 64) -> str:
    """A minimal nginx.conf around the sites, with every file it writes kept under tmp."""
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp / kind};" for kind in
                           ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # Workers of a root master run as nobody, who cannot enter pytest's 0700 temporary folders.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""daemon off;
{user}
worker_processes 1;
pid {tmp / 'nginx.pid'};
error_log {tmp / 'error.log'};
events {{ worker_connections {worker_connections}; }}
http {{
    access_log {tmp / 'access.log'};
{temp_paths}
{"".join(f"    include {site};{chr(10)}" for site in sites)}}}
"""


def site_values(deployment: Deployment, folder: Path, port: int, gunicorn_port: int) -> dict[str, str]:
    """deploy/nginx.conf's placeholders for a deployment served on port with gunicorn on gunicorn_port,
    nginx's cache and access log under folder."""
    settings = deployment.settings()
    return {"LISTEN": f"{HOST}:{port}", "SERVER_NAME": "localhost", "TARBALLS": str(settings.tarballs),
            "PUBLISHED": str(settings.published), "CACHE_SECONDS": str(settings.cache_seconds),
            "GUNICORN": f"{HOST}:{gunicorn_port}", "CACHE": str(folder / "cache"),
            "ACCESS_LOG": str(folder / "access.log")}


@contextlib.contextmanager
def running_nginx(folder: Path, sites: dict[str, str], ports: Iterable[int],
                  worker_connections: int = 64) -> Iterator[subprocess.Popen]:
    """nginx with these sites (file name -> text, written into folder, with every file nginx writes) until
    the block ends; yielded once it answers on every port."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in sites.items():
        (folder / name).write_text(text)
    (folder / "nginx.conf").write_text(nginx_main_config(folder, *(folder / name for name in sites),
                                                         worker_connections=worker_connections))
    log = folder / "error.log"
    process = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(log)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in ports:
            wait_until_serving(process, port, log)
        yield process
    finally:
        stop(process)
