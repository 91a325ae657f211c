"""End to end as in production: real gunicorn running wsgi:app, behind real nginx with deploy/nginx.conf."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from helpers import Deployment, git
from serving import (
    HOST,
    Answer,
    fetch,
    free_port,
    needs_nginx,
    render_site,
    running_nginx,
    site_values,
    start_gunicorn,
)

from loopback.gitdaemon import stop

pytestmark = [needs_nginx, pytest.mark.nginx]


@dataclass
class Served:
    """A synced deployment served by gunicorn behind nginx, and by nginx alone as a static site."""

    deployment: Deployment
    port: int  # nginx's, deploy/nginx.conf
    static_port: int  # nginx's, deploy/nginx-static.conf


@pytest.fixture(scope="module")
def served(module_tmp, module_upstream, module_deployment) -> Iterator[Served]:
    """Sync three repositories, then start gunicorn and nginx on free loopback ports; stop both afterwards."""
    tmp, deployment = module_tmp, module_deployment
    cite = module_upstream("Cite")
    git(cite.path, "branch", "REL1_45")
    module_upstream("Echo")
    module_upstream("Vector", kind="skins", files={"skin.json": json.dumps({"name": "Vector"})})
    deployment.sync()

    api_port, web_port, static_port = free_port(), free_port(), free_port()
    gunicorn = start_gunicorn(deployment, api_port, tmp / "gunicorn.log")
    try:
        nginx_dir = tmp / "nginx"
        values = {**site_values(deployment, nginx_dir, web_port, api_port),
                  "ACCESS_LOG": str(nginx_dir / "tardist.access.log")}
        static = {key: values[key] for key in ("TARBALLS", "PUBLISHED", "CACHE_SECONDS")}
        sites = {"tardist.conf": render_site(values),
                 "tardist-static.conf": render_site({"LISTEN": f"{HOST}:{static_port}", "SERVER_NAME": "localhost",
                                                     **static}, "deploy/nginx-static.conf")}
        with running_nginx(nginx_dir, sites, (web_port,)):
            yield Served(deployment, web_port, static_port)
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
    proxied = "/info/skins?names=Vector"  # a query string: the app answers, through nginx's cache
    direct = served.deployment.app().test_client().get(proxied).headers["ETag"]
    first = fetch(served.port, proxied, **{"If-None-Match": direct})  # nginx has not seen it yet
    assert first.status == 304 and first.body == b""
    for path in ("/list", proxied):
        answer = fetch(served.port, path)
        assert answer.status == 200
        again = fetch(served.port, path, **{"If-None-Match": answer.headers["etag"]})
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
    fetch(served.port, "/info/extensions?names=Cite")
    assert fetch(served.port, "/info/extensions?names=Cite").headers["x-cache-status"] == "HIT"
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


@pytest.mark.parametrize("site", ["port", "static_port"])
def test_extension_distributor_reads_gerrit_answers_through_nginx(served, site):
    # What GerritExtDistProvider does: repoListUrl, then apiUrl per repository, each answer stripped of
    # its first 4 characters and decoded; only refs/heads/ kept; then it links to $EXT-$REF-$SHA7.tar.gz.
    port = getattr(served, site)
    client = served.deployment.app().test_client()
    listing = fetch(port, "/gerrit/projects/?b=master&p=mediawiki/extensions/")
    assert listing.status == 200 and listing.headers["content-type"] == "application/json"
    assert "x-cache-status" not in listing.headers, "a file of published/"
    assert listing.body == client.get("/gerrit/projects/?b=master&p=mediawiki/extensions/").data
    assert fetch(port, "/gerrit/projects/?p=mediawiki%2Fextensions%2F").body == listing.body
    projects = json.loads(listing.body.decode()[4:])
    assert list(projects) == ["mediawiki/extensions/Cite", "mediawiki/extensions/Echo"]
    links = []
    for project, facts in projects.items():
        answer = fetch(port, f"/gerrit/projects/{facts['id']}/branches")  # mediawiki%2Fextensions%2FCite
        assert answer.status == 200, (project, answer.body)
        assert "x-cache-status" not in answer.headers, "a file of published/"
        assert answer.body == client.get(f"/gerrit/projects/{facts['id']}/branches").data
        name = project.rsplit("/", 1)[1]
        info = fetch(port, f"/info/extensions/{name}").json()
        for entry in json.loads(answer.body.decode()[4:]):
            if entry["ref"].startswith("refs/heads/"):
                branch = entry["ref"][len("refs/heads/"):]
                assert entry["revision"] == info["branches"][branch]["commit"]
                links.append(f"/dist/extensions/{name}-{branch}-{entry['revision'][:7]}.tar.gz")
    assert len(links) == 3
    for link in links:
        assert fetch(port, link).status == 200, link
    missing = fetch(port, "/gerrit/projects/mediawiki%2Fextensions%2FNope/branches")
    assert missing.status == 404 and missing.json()["error"]["status"] == 404
    assert fetch(port, "/gerrit/projects/mediawiki%2Fskins%2FVector/branches").status == 200


def test_other_gerrit_queries_go_to_the_app(served):
    client = served.deployment.app().test_client()
    for path in ("/gerrit/projects/?p=mediawiki/", "/gerrit/projects/?p=mediawiki/ext", "/gerrit/projects/?x=1"):
        answer = fetch(served.port, path)
        assert "x-cache-status" in answer.headers, path
        assert (answer.status, answer.body) == (client.get(path).status_code, client.get(path).data), path


STATIC_URLS = ["/list", "/list/extensions", "/list/skins", "/info/extensions", "/info/skins",
               "/info/extensions/Cite", "/info/extensions/Echo", "/info/skins/Vector"]


def assert_is_the_apps_answer(answer: Answer, app_answer) -> None:
    """Same status, body, Content-Type and Cache-Control as the app's answer; nginx's own ETag."""
    assert answer.status == app_answer.status_code == 200
    assert answer.body == app_answer.data
    assert answer.headers["content-type"] == app_answer.headers["Content-Type"] == "application/json"
    assert answer.headers["cache-control"] == app_answer.headers["Cache-Control"] == "public, max-age=5"
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', answer.headers["etag"])  # nginx's: mtime-size


@pytest.mark.parametrize("site", ["port", "static_port"])
def test_list_and_info_come_from_published_files(served, site):
    client = served.deployment.app().test_client()
    for path in STATIC_URLS:
        answer = fetch(getattr(served, site), path)
        assert "x-cache-status" not in answer.headers, path  # not proxied: nginx read the file
        assert_is_the_apps_answer(answer, client.get(path))
        again = fetch(getattr(served, site), path, **{"If-None-Match": answer.headers["etag"]})
        assert again.status == 304 and again.body == b""


def test_queries_and_missing_files_fall_back_to_the_app(served):
    client = served.deployment.app().test_client()
    batch = fetch(served.port, "/info/extensions?names=Cite|Echo")
    assert batch.status == 200 and "x-cache-status" in batch.headers
    assert batch.body == client.get("/info/extensions?names=Cite|Echo").data
    bad = fetch(served.port, "/info/extensions?names=../x")
    assert bad.status == 400 and bad.json()["error"]["status"] == 400
    assert fetch(served.port, "/list?anything=1").headers.get("x-cache-status")  # any query string: the app

    echo = served.deployment.settings().published / "info/extensions/Echo.json"
    echo.rename(echo.with_name("Echo.aside"))
    time.sleep(1.1)  # nginx may serve a file it holds open for open_file_cache_valid (1 s) after it goes
    try:
        missing_file = fetch(served.port, "/info/extensions/Echo")
        assert missing_file.status == 200 and "x-cache-status" in missing_file.headers
        assert missing_file.body == client.get("/info/extensions/Echo").data
    finally:
        echo.with_name("Echo.aside").rename(echo)
    for path in ("/info/extensions/Nope", "/list/nokind", "/status"):
        answer = fetch(served.port, path)
        assert "x-cache-status" in answer.headers and answer.json() == client.get(path).get_json()


def test_the_static_site_answers_misses_in_the_error_shape(served):
    for path in ("/info/extensions/Nope", "/list/nokind", "/status", "/download/extensions/Cite/master",
                 "/dist/extensions/Nope-master-1234567.tar.gz", "/info/extensions/.tmp-Cite.json.1"):
        answer = fetch(served.static_port, path)
        assert answer.status == 404, path
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.json()["error"]["status"] == 404
    batch = fetch(served.static_port, "/info/extensions?names=Cite")
    assert batch.status == 400 and batch.json()["error"]["status"] == 400
    assert "names" in batch.json()["error"]["message"]


def test_the_static_site_serves_the_tarballs_info_names(served):
    branch = fetch(served.static_port, "/info/extensions/Cite").json()["branches"]["master"]
    tarball = fetch(served.static_port, branch["url"])
    assert tarball.status == 200 and hashlib.sha256(tarball.body).hexdigest() == branch["sha256"]
    assert tarball.headers["cache-control"] == "public, max-age=31536000, immutable"


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


@pytest.mark.slow
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


def test_what_nginx_serves_itself_carries_the_security_headers(served):
    tarball = fetch(served.port, "/info/extensions/Cite").json()["branches"]["master"]["url"]
    for port, path in ((served.port, "/info/extensions/Cite"), (served.port, "/list"), (served.port, tarball),
                       (served.port, "/dist/extensions/"), (served.port, "/browse/extensions/Cite"),
                       (served.port, "/gerrit/projects/?b=master&p=mediawiki/extensions/"),
                       (served.static_port, "/info/extensions/Cite"), (served.static_port, tarball),
                       (served.static_port, "/dist/extensions/"), (served.static_port, "/info/extensions/Nope"),
                       (served.static_port, "/info/extensions?names=Cite")):
        answer = fetch(port, path)
        assert answer.status < 500, path
        assert answer.headers.get("x-content-type-options") == "nosniff", (port, path)
        assert answer.headers.get("referrer-policy") == "no-referrer", (port, path)
        assert answer.headers.get("x-frame-options") == "DENY", (port, path)
        assert "frame-ancestors 'none'" in answer.headers.get("content-security-policy", ""), (port, path)


NGINX_OWN_ERRORS = [  # answered by nginx itself, before or without the app
    ("/dist/extensions/Cite-master-1234567.tar.gz/", 404), ("/dist/extensions/Cite-master-1234567.tar.gz;.json", 404),
    ("/dist/extensions/README.md", 404), ("/dist/nokind/", 404), ("/dist/extensions/.tmp-Cite.tar.gz", 404),
    ("/dist/extensions/%00", 400), ("/info/extensions/Cite%00", 400), ("/dist/..%2F..%2Fetc/passwd", 400),
    ("/dist/extensions/..%2F..%2F..%2Fsecret.tar.gz", 400), ("/" + "A" * 9000, 414),
]


@pytest.mark.parametrize("site", ["nginx.conf", "nginx-static.conf"])
def test_errors_nginx_answers_itself_are_in_the_json_shape(served, site):
    port = served.port if site == "nginx.conf" else served.static_port
    tarball = fetch(port, "/info/extensions/Cite").json()["branches"]["master"]["url"]
    for method, path, status, headers in [("GET", path, status, {}) for path, status in NGINX_OWN_ERRORS] + [
            ("POST", tarball, 405, {}), ("GET", tarball, 416, {"Range": "bytes=99999999-"})]:
        answer = fetch(port, path, method=method, **headers)
        assert answer.status == status, (method, path, answer.body[:200])
        assert answer.headers["content-type"] == "application/json", (method, path)
        assert answer.headers["cache-control"] == "no-store", (method, path)
        assert answer.json() == {"error": {"status": status, "message": answer.json()["error"]["message"]}}, path
        assert answer.json()["error"]["message"], path
        assert answer.headers["x-content-type-options"] == "nosniff", (method, path)
        assert answer.headers["x-frame-options"] == "DENY", (method, path)
        assert answer.headers["referrer-policy"] == "no-referrer", (method, path)
        assert answer.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'", path
