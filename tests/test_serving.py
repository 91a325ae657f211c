"""End to end as in production: real gunicorn running wsgi:app, behind real nginx with deploy/nginx.conf."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Deployment, Repo, directory_source, extension_files, git
from bench.gitdaemon import stop

ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
HOST = "127.0.0.1"

pytestmark = pytest.mark.skipif(not os.access(NGINX, os.X_OK),
                                reason="nginx is not installed (Debian: apt install nginx-light; CI installs it)")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Answer:
    """One HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        """The body decoded as JSON."""
        return json.loads(self.body)


def fetch(port: int, path: str, **headers: str) -> Answer:
    """GET path from 127.0.0.1:port, without following redirects."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
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


def render_site(values: dict[str, str]) -> str:
    """deploy/nginx.conf with its @PLACEHOLDERS@ filled in."""
    text = (ROOT / "deploy/nginx.conf").read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    assert not re.search(r"@[A-Z_]+@", text), "every placeholder is documented and filled"
    return text


def nginx_main_config(tmp: Path, site: Path) -> str:
    """A minimal nginx.conf around the site, with every file it writes kept under tmp."""
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp / kind};" for kind in
                           ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # Workers of a root master run as nobody, who cannot enter pytest's 0700 temporary folders.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""daemon off;
{user}
worker_processes 1;
pid {tmp / 'nginx.pid'};
error_log {tmp / 'error.log'};
events {{ worker_connections 64; }}
http {{
    access_log {tmp / 'access.log'};
{temp_paths}
    include {site};
}}
"""


@dataclass
class Served:
    """A synced deployment served by gunicorn behind nginx."""

    deployment: Deployment
    port: int  # nginx's


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """Sync three repositories, then start gunicorn and nginx on free loopback ports; stop both afterwards."""
    tmp = tmp_path_factory.mktemp("serving")
    cite = Repo(tmp / "upstream/extensions/Cite")
    cite.commit(extension_files("Cite"))
    git(cite.path, "branch", "REL1_45")
    Repo(tmp / "upstream/extensions/Echo").commit(extension_files("Echo"))
    Repo(tmp / "upstream/skins/Vector").commit({"skin.json": json.dumps({"name": "Vector"})})
    (tmp / "deploy").mkdir()
    deployment = Deployment(tmp / "deploy", tmp / "deploy/tardist.toml")
    deployment.write_config(directory_source("extensions", tmp / "upstream/extensions")
                            + directory_source("skins", tmp / "upstream/skins"))
    deployment.sync()

    api_port, web_port = free_port(), free_port()
    gunicorn = start_gunicorn(deployment, api_port, tmp / "gunicorn.log")
    try:
        nginx_dir = tmp / "nginx"
        nginx_dir.mkdir()
        site = nginx_dir / "tardist.conf"
        site.write_text(render_site({"LISTEN": f"{HOST}:{web_port}", "SERVER_NAME": "localhost",
                                     "TARBALLS": str(deployment.settings().tarballs),
                                     "GUNICORN": f"{HOST}:{api_port}", "CACHE": str(nginx_dir / "cache"),
                                     "ACCESS_LOG": str(nginx_dir / "tardist.access.log")}))
        (nginx_dir / "nginx.conf").write_text(nginx_main_config(nginx_dir, site))
        nginx_log = nginx_dir / "error.log"
        nginx = subprocess.Popen(
            [NGINX, "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf"), "-e", str(nginx_log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_serving(nginx, web_port, nginx_log)
            yield Served(deployment, web_port)
        finally:
            stop(nginx)
    finally:
        stop(gunicorn)


def test_info_names_a_tarball_that_nginx_serves_with_that_sha256(served):
    info = fetch(served.port, "/info/extensions/Cite")
    assert info.status == 200 and info.headers["content-type"] == "application/json"
    branch = info.json()["branches"]["REL1_45"]
    tarball = fetch(served.port, branch["url"])
    assert tarball.status == 200
    assert hashlib.sha256(tarball.body).hexdigest() == branch["sha256"]
    assert len(tarball.body) == branch["size"]
    assert tarball.headers["content-type"] == "application/gzip"
    assert tarball.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_download_redirects_to_the_tarball(served):
    branch = fetch(served.port, "/info/extensions/Echo").json()["branches"]["master"]
    redirect = fetch(served.port, "/download/extensions/Echo/master")
    assert redirect.status == 302 and redirect.headers["location"] == branch["url"]
    tarball = fetch(served.port, redirect.headers["location"])
    assert tarball.status == 200 and hashlib.sha256(tarball.body).hexdigest() == branch["sha256"]


def test_if_none_match_gets_a_304_through_nginx(served):
    direct = served.deployment.app().test_client().get("/info/skins/Vector").headers["ETag"]
    first = fetch(served.port, "/info/skins/Vector", **{"If-None-Match": direct})  # nginx has not seen it yet
    assert first.status == 304 and first.body == b""
    answer = fetch(served.port, "/list")
    assert answer.status == 200
    again = fetch(served.port, "/list", **{"If-None-Match": answer.headers["etag"]})
    assert again.status == 304 and again.headers["etag"] == answer.headers["etag"]


def test_big_answers_are_gzipped_and_still_revalidate(served):
    zipped = fetch(served.port, "/info/extensions", **{"Accept-Encoding": "gzip"})
    assert zipped.status == 200 and zipped.headers["content-encoding"] == "gzip"
    assert list(json.loads(gzip.decompress(zipped.body))["extensions"]) == ["Cite", "Echo"]
    assert zipped.headers["etag"].startswith('W/"')  # nginx weakens the ETag of what it compresses
    again = fetch(served.port, "/info/extensions",
                  **{"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]})
    assert again.status == 304


def test_nginx_keeps_api_answers_but_not_status_or_errors(served):
    fetch(served.port, "/list/extensions")
    assert fetch(served.port, "/list/extensions").headers["x-cache-status"] == "HIT"
    for path in ("/status", "/info/extensions/Nope"):
        fetch(served.port, path)
        assert fetch(served.port, path).headers["x-cache-status"] != "HIT"
    missing = fetch(served.port, "/info/extensions/Nope")
    assert missing.status == 404 and missing.json()["error"]["status"] == 404


def test_dist_folders_are_browsable(served):
    tarballs = served.deployment.settings().tarballs
    listing = fetch(served.port, "/dist/extensions/")
    assert listing.status == 200 and listing.headers["content-type"].startswith("text/html")
    files = sorted(p.name for p in (tarballs / "extensions").iterdir())
    assert len(files) == 3
    for name in files:
        assert f'href="{name}"' in listing.body.decode()
    top = fetch(served.port, "/dist/").body.decode()
    assert 'href="extensions/"' in top and 'href="skins/"' in top


def test_browsers_get_the_pages_and_clients_the_json_through_the_cache(served):
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    for _ in range(2):  # the second round comes from nginx's cache: each variant must stay itself
        redirect = fetch(served.port, "/", **browser)
        assert redirect.status == 302 and redirect.headers["location"].endswith("/browse")
        assert redirect.headers["vary"] == "Accept"
        for accept in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
            answer = fetch(served.port, "/", **accept)
            assert answer.status == 200 and answer.json()["service"] == "tardist"
    assert fetch(served.port, "/", Accept="application/json").headers["x-cache-status"] == "HIT"
    page = fetch(served.port, "/browse/extensions/Cite")
    assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert b"The Cite extension" in page.body
    again = fetch(served.port, "/browse/extensions/Cite", **{"If-None-Match": page.headers["etag"]})
    assert again.status == 304


def test_downloads_through_nginx_are_counted_once_from_its_log(served):
    log = served.deployment.root.parent / "nginx/tardist.access.log"  # written by deploy/nginx.conf's format
    before = served.deployment.cli("stats", "ingest", str(log))
    assert before.returncode == 0, before.stderr
    start = served.deployment.app().test_client().get("/stats/extensions/Echo").get_json()["all_time"]
    url = fetch(served.port, "/info/extensions/Echo").json()["branches"]["master"]["url"]
    for _ in range(3):
        assert fetch(served.port, url).status == 200
    assert fetch(served.port, url, Range="bytes=0-9").status == 206  # a part is not a download
    assert fetch(served.port, url.replace("Echo-", "Nope-")).status == 404
    for _ in range(2):
        result = served.deployment.cli("stats", "ingest", str(log))
        assert result.returncode == 0, result.stderr
    counted = served.deployment.app().test_client().get("/stats/extensions/Echo").get_json()
    assert counted["all_time"] == start + 3
    line = log.read_text().splitlines()[-1]
    assert re.fullmatch(r'127\.0\.0\.1 - - \[.+\] "GET /dist/extensions/Nope-.+" 404 \d+ "-" "-" [\d.]+ -', line)
