"""The API under fuzzing (schemathesis) and hostile requests: never a 5xx, always the documented answer."""

from __future__ import annotations

import json

import pytest
import schemathesis
from helpers import populate
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
EXAMPLES = 30  # per endpoint and generation mode: the whole file stays well under a minute


@pytest.fixture
def app(deployment, upstream, tmp_path):
    """The app of a synced deployment with a bit of everything."""
    populate(deployment, upstream, tmp_path)
    return deployment.app()


@schemathesis.deserializer("application/json")
def gerrit_aware_json(ctx, response):
    """JSON, but Gerrit's answers first lose their )]}' line, as every Gerrit client strips it."""
    text = response.content.decode()
    if ctx.operation.path.startswith("/gerrit/") and response.status_code == 200:
        assert text.startswith(")]}'\n"), text[:20]
        text = text[4:]
    return json.loads(text)


@pytest.mark.slow
def test_fuzzed_requests_get_documented_answers(app):
    # schemathesis' pytest integration (from_fixture) does not run under pytest 9: drive hypothesis directly
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 16  # every path but /openapi.json, which schemathesis leaves out
    cannot_be_invalid = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case: schemathesis.Case) -> None:
                case.call_and_validate(checks=CHECKS)
            try:
                fuzz()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise
                cannot_be_invalid.append(operation.label)
    # their one parameter is a free-form header: there is no invalid request to make
    assert cannot_be_invalid == ["GET /", "GET /list", "GET /status"]


def assert_error(response, status: int) -> None:
    """The documented error answer: the status, and {"error": {"status", "message"}} as JSON."""
    assert response.status_code == status, (response.request.url, response.status_code, response.data[:200])
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"status", "message"}
    assert body["error"]["status"] == status and isinstance(body["error"]["message"], str)


LONG = "A" * 10_000
HOSTILE_PATHS = [
    "/info/extensions/Ci%00te", "/info/extensions/..", "/info/extensions/.", "/info/extensions/%2e%2e",
    "/info/extensions/..%2F..%2Fetc%2Fpasswd", "/info/..%2F..%2Fetc/passwd", "/info/extensions/-rf",
    f"/info/extensions/{LONG}", f"/info/{LONG.lower()}/Cite", "/info/extensions/Cite%ff", "/info/extensions/Ünï",
    "/info/extensions/Cite%0A", "/info/extensions/Cite.git", "/info/Extensions/Cite", "/list/..",
    "/list/extensions%00", f"/list/{LONG.lower()}", "/info/extensions/%20Cite",
    "/download/extensions/Cite/..", "/download/extensions/Cite/..%2F..%2Fetc%2Fpasswd",
    "/download/extensions/Cite/master%00", f"/download/extensions/Cite/{LONG}", "/download/../Cite/master",
    "/dist/extensions/..%2F..%2Finstance%2Ftardist.sqlite3", "/dist/extensions/..%2Ftardist.toml",
    "/dist/..%2F..%2Fetc/passwd", "/dist/extensions/.tmp-Cite.tar.gz", "/dist/extensions/Cite.tar.gz%00.txt",
    f"/dist/extensions/{LONG}.tar.gz", "/dist/extensions/%2Fetc%2Fpasswd.tar.gz", "/info/extensions/Cite/extra",
    "/browse/extensions/..", "/browse/..%2F..%2Fetc/passwd", f"/browse/extensions/{LONG}", "/browse/extensions/Ci%00te",
    "/stats/extensions/..", f"/stats/{LONG.lower()}", "/stats/extensions/Cite%0A", "/browse/extensions/Cite/extra",
]


def test_hostile_paths_get_the_json_404(app):
    client = app.test_client()
    for path in HOSTILE_PATHS:
        with client.get(path) as response:
            assert_error(response, 404)


HOSTILE_QUERIES = [
    "names=", "names=|||", "names=../etc", "names=Cite%00", "names=%ff", "names=-rf", "names=a%0Ab",
    "names=" + "|".join(f"N{i}" for i in range(501)), f"names={LONG}", "names=Cite&colour=blue", "colour=blue",
    "%ff=1", "names[]=Cite", "=", "names=Cite&&&&=",
]


def test_hostile_query_strings_get_the_json_400(app):
    client = app.test_client()
    for query in HOSTILE_QUERIES:
        with client.get(f"/info/extensions?{query}") as response:
            assert_error(response, 400)
    ok = client.get("/info/extensions?names=Cite|Nope|Cite")
    assert ok.status_code == 200 and list(ok.get_json()["extensions"]) == ["Cite"]


def test_hostile_headers_change_nothing(app):
    client = app.test_client()
    plain = client.get("/info/extensions/Cite")
    etag = plain.headers["ETag"]
    odd_tags = ['"unterminated', "W/", ",,,", '""', "W/W/\"x\"", "\x00", '"' + "x" * 100_000 + '"',
                ", ".join(f'"{i}"' for i in range(10_000)), "\u00e9t\u00e9"]
    for value in odd_tags:
        response = client.get("/info/extensions/Cite", environ_overrides={"HTTP_IF_NONE_MATCH": value})
        assert response.status_code == 200 and response.data == plain.data, repr(value[:40])
    for value in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        response = client.get("/info/extensions/Cite", headers={"If-None-Match": value})
        assert response.status_code == 304 and response.data == b"", value
    hostile = {"HTTP_X_HUGE": "x" * 1_000_000, "HTTP_HOST": "evil.example\x00", "HTTP_ACCEPT": "\x00" * 100,
               "HTTP_ACCEPT_ENCODING": "gzip;q=NaN", "HTTP_RANGE": "bytes=-0", "HTTP_COOKIE": "a=" + "b" * 100_000,
               "HTTP_IF_MODIFIED_SINCE": "yesterday", "CONTENT_LENGTH": "-1"}
    for key, value in hostile.items():
        for url in ("/info/extensions/Cite", "/list", "/status", "/"):
            response = client.get(url, environ_overrides={key: value})
            assert response.status_code == 200, (key, url, response.status_code)
    for method in ("post", "put", "delete", "patch"):
        assert_error(getattr(client, method)("/info/extensions/Cite", data=b"x" * 1000), 405)
