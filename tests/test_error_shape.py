"""Every error path answers {"error": {"status": N, "message": "..."}} as JSON, and hostile names go nowhere."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Deployment, directory_source

TOO_MANY_NAMES = "|".join(f"Name{i}" for i in range(501))
LONG = "A" * 10_000

NOT_FOUND = [
    "/nope", "/info", "/list/", "/list/apps", "/list/Extensions", "/list/..", "/info/apps", "/info/apps/Cite",
    "/info/extensions/Nope", "/info/extensions/cite", "/download/apps/Cite/master",
    "/download/extensions/Nope/master", "/download/extensions/Cite/REL1_45", "/download/extensions/Cite/nope",
    "/dist/extensions/Nope-master-0000000.tar.gz", "/dist/extensions/README.md", "/dist/apps/Cite.tar.gz",
    "/info/apps?names=Cite",
]
BAD_REQUEST = [
    "/info/extensions?names=", "/info/extensions?names=|||", "/info/extensions?names=../etc",
    f"/info/extensions?names={TOO_MANY_NAMES}", "/info/extensions?name=Cite", "/info/extensions?names=Cite&limit=5",
    f"/info/extensions?names={LONG}", "/info/extensions?names=Cit%C3%A8", "/info/extensions?names=Cite%00",
    "/info/extensions?names=Cite|.git", "/info/extensions?names=Cite&names=Echo",
]
WRONG_METHOD = [("POST", "/list"), ("DELETE", "/info/extensions/Cite"), ("PUT", "/download/extensions/Cite/master"),
                ("POST", "/dist/extensions/Cite.tar.gz"), ("PATCH", "/status"), ("POST", "/")]
# Names that try to leave tarballs/, smuggle bytes or exhaust something, as they arrive in a URL.
HOSTILE = ["..", "..%2F..%2Fsecret.tar.gz", "..%2f..%2fsecret.tar.gz", "%2e%2e%2fsecret.tar.gz",
           "%2e%2e", "....%2F%2Fsecret.tar.gz", "..%5C..%5Csecret.tar.gz", "Cite%00", "%00", "Cite%00.tar.gz",
           LONG, f"{LONG}.tar.gz", "Cit%C3%A8", "%C4%88ite-master-0000000.tar.gz", "%FF%FE", "Cite%0D%0AX-Evil:%201",
           "%252e%252e%252fsecret.tar.gz", ".tmp-Cite.tar.gz", "~root", "Cite.git"]
HOSTILE_URLS = [url for name in HOSTILE for url in (
    f"/info/extensions/{name}", f"/info/{name}/Cite", f"/info/{name}", f"/list/{name}",
    f"/download/extensions/{name}/master", f"/download/extensions/Cite/{name}", f"/download/{name}/Cite/master",
    f"/dist/extensions/{name}", f"/dist/{name}/Cite.tar.gz", f"/dist/{name}/{name}")]


def assert_error_shape(response, status: int) -> str:
    """The answer is exactly the one JSON error body with that status; return its message."""
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body == {"error": {"status": status, "message": body["error"]["message"]}}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert response.headers["Cache-Control"] == "no-store"
    return body["error"]["message"]


@pytest.fixture(scope="module")
def deployment_with_cite(module_tmp, module_upstream, module_deployment) -> Deployment:
    """A deployment where the worker synced extensions/Cite (master only), plus a file outside tarballs/."""
    tmp, deployment = module_tmp, module_deployment
    module_upstream("Cite")
    deployment.write_config(directory_source("extensions", tmp / "upstream/extensions"))
    deployment.sync()
    (tmp / "deploy/secret.tar.gz").write_text("outside tarballs/")
    return deployment


@pytest.fixture
def client(deployment_with_cite: Deployment):
    """A test client of that deployment's app."""
    return deployment_with_cite.app().test_client()


@pytest.mark.parametrize("url", NOT_FOUND)
def test_not_found(client, url):
    assert_error_shape(client.get(url), 404)


@pytest.mark.parametrize("url", BAD_REQUEST)
def test_bad_names_query(client, url):
    message = assert_error_shape(client.get(url), 400)
    assert len(message) < 300


@pytest.mark.parametrize("method, url", WRONG_METHOD)
def test_wrong_method(client, method, url):
    response = client.open(url, method=method)
    assert_error_shape(response, 405)
    assert "GET" in response.headers["Allow"]


def test_unexpected_exception_is_a_500_that_hides_its_details(deployment_with_cite):
    app = deployment_with_cite.app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("internal detail /srv/secret")

    response = app.test_client().get("/boom")
    assert "internal detail" not in assert_error_shape(response, 500)


def test_debug_mode_lets_the_developer_see_the_exception(deployment_with_cite):
    app = deployment_with_cite.app(DEBUG=True)

    @app.get("/boom")
    def boom():
        raise RuntimeError("internal detail")

    with pytest.raises(RuntimeError, match="internal detail"):
        app.test_client().get("/boom")


def test_corrupt_database_is_a_500(deployment):
    database = deployment.settings().database
    database.parent.mkdir(parents=True)
    database.write_bytes(b"this is not an SQLite database\n" * 200)
    client = deployment.app().test_client()
    for url in ("/list", "/info/extensions/Cite", "/status"):
        assert_error_shape(client.get(url), 500)


_opened: list[str] | None = None
_hooked = False


def _record_opens(event: str, args: tuple) -> None:
    if _opened is not None and event in ("open", "os.listdir", "os.scandir") and isinstance(args[0], (str, bytes)):
        _opened.append(os.path.realpath(os.fsdecode(args[0])))


@contextlib.contextmanager
def files_opened() -> Iterator[list[str]]:
    """Collect the real path of every file this process opens or lists inside the block (Python audit events)."""
    global _opened, _hooked
    if not _hooked:  # an audit hook cannot be removed, so add one, once, that is idle outside the block
        sys.addaudithook(_record_opens)
        _hooked = True
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def test_hostile_names_get_a_json_error_and_open_nothing_outside_tarballs(deployment_with_cite, client):
    tarballs = Path(os.path.realpath(deployment_with_cite.settings().tarballs))
    legit = next((tarballs / "extensions").glob("Cite-master-*.tar.gz"))
    with files_opened() as opened:
        for url in HOSTILE_URLS:
            # follow_redirects: werkzeug answers "a//b" with a 308 to "a/b" first.
            assert_error_shape(client.get(url, follow_redirects=True), 404)
        client.get(f"/dist/extensions/{legit.name}").close()
    assert opened == [str(legit)], "only the one legitimate tarball was opened"
