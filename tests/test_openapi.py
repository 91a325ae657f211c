"""/openapi.json: a valid OpenAPI 3.1 document that describes every route and every real answer."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from helpers import populate

# The official OpenAPI 3.1 schema (spec.openapis.org/oas/3.1/schema/2022-10-07), as schemathesis ships it.
from schemathesis.specs.openapi.definitions import OPENAPI_31

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def client(deployment, upstream, tmp_path):
    populate(deployment, upstream, tmp_path)
    return deployment.app().test_client()


@pytest.fixture
def document(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    jsonschema.Draft202012Validator(OPENAPI_31).validate(document)
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
            for answer in operation["responses"].values():
                for media in answer.get("content", {}).values():
                    jsonschema.Draft202012Validator.check_schema(media["schema"])


def test_document_describes_every_route_of_the_app(client, document):
    routes = set()
    for rule in client.application.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    described = {(path, method) for path, item in document["paths"].items() for method in item if method in METHODS}
    assert described == routes


def validate_answer(document: dict, path: str, response) -> None:
    """The response's status, media type, required headers and body are what the document says for path."""
    operation = document["paths"][path]["get"]
    status = str(response.status_code)
    assert status in operation["responses"], f"GET {path}: {status} is not documented"
    answer = operation["responses"][status]
    for header, spec in answer.get("headers", {}).items():
        if spec.get("required"):
            assert header in response.headers, f"GET {path} {status}: no {header} header"
    content = answer.get("content")
    if not content:
        assert status in ("206", "302", "304") or not response.data
        return
    assert response.mimetype in content, f"GET {path} {status}: {response.mimetype} is not documented"
    schema = content[response.mimetype]["schema"]
    if response.mimetype == "application/json":
        # Gerrit's answers start with the line )]}' (the document says so): strip it as its clients do
        gerrit = path.startswith("/gerrit/") and status == "200"
        body = json.loads(response.data.decode()[4:]) if gerrit else response.get_json()
        # "#/components/..." references resolve against the root schema: give it the components
        validator = jsonschema.Draft202012Validator({**schema, "components": document["components"]},
                                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        validator.validate(body)


def test_every_real_answer_matches_the_document(client, document):
    info = client.get("/info/extensions/Cite").get_json()
    tarball = info["branches"]["master"]["tarball"]
    requests = [
        ("/", "/", {}), ("/list", "/list", {}),
        ("/list/{kind}", "/list/extensions", {}), ("/list/{kind}", "/list/apps", {}),
        ("/list/{kind}", "/list/nope", {}), ("/list/{kind}", "/list/NOT A KIND", {}),
        ("/info/{kind}", "/info/extensions", {}), ("/info/{kind}", "/info/skins", {}),
        ("/info/{kind}", "/info/apps", {}), ("/info/{kind}", "/info/extensions?names=Cite|Broken|Nope", {}),
        ("/info/{kind}", "/info/extensions?names=", {}), ("/info/{kind}", "/info/extensions?names=../x", {}),
        ("/info/{kind}", "/info/extensions?colour=blue", {}), ("/info/{kind}", "/info/nope", {}),
        ("/info/{kind}/{name}", "/info/extensions/Cite", {}),
        ("/info/{kind}/{name}", "/info/extensions/Broken", {}),
        ("/info/{kind}/{name}", "/info/extensions/Links", {}),
        ("/info/{kind}/{name}", "/info/extensions/BadManifest", {}),
        ("/info/{kind}/{name}", "/info/extensions/NoManifest", {}),
        ("/info/{kind}/{name}", "/info/apps/Gone", {}),
        ("/info/{kind}/{name}", "/info/skins/Vector", {}),
        ("/info/{kind}/{name}", "/info/extensions/Nope", {}),
        ("/info/{kind}/{name}", "/info/extensions/..", {}),
        ("/download/{kind}/{name}/{branch}", "/download/extensions/Cite/master", {}),
        ("/download/{kind}/{name}/{branch}", "/download/extensions/Cite/REL1_39", {}),
        ("/download/{kind}/{name}/{branch}", "/download/extensions/Nope/master", {}),
        ("/download/{kind}/{name}/{branch}", "/download/nope/Cite/master", {}),
        ("/status", "/status", {}), ("/openapi.json", "/openapi.json", {}),
        ("/gerrit/projects/", "/gerrit/projects/?b=master&p=mediawiki/extensions/", {}),
        ("/gerrit/projects/", "/gerrit/projects/", {}), ("/gerrit/projects/", "/gerrit/projects/?x=1", {}),
        ("/gerrit/projects/{project}/branches", "/gerrit/projects/mediawiki%2Fextensions%2FCite/branches", {}),
        ("/gerrit/projects/{project}/branches", "/gerrit/projects/mediawiki%2Fextensions%2FNope/branches", {}),
        ("/dist/{kind}/{file}", f"/dist/extensions/{tarball}", {}),
        ("/dist/{kind}/{file}", f"/dist/extensions/{tarball}", {"Range": "bytes=0-9"}),
        ("/dist/{kind}/{file}", f"/dist/extensions/{tarball}", {"Range": "bytes=99999999-"}),
        ("/dist/{kind}/{file}", "/dist/extensions/Nope-master-0000000.tar.gz", {}),
        ("/dist/{kind}/{file}", "/dist/extensions/.tmp-x.tar.gz", {}),
        ("/", "/", {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}),
        ("/list/{kind}", "/list/extensions?sort=downloads", {}), ("/list/{kind}", "/list/extensions?sort=size", {}),
        ("/info/{kind}/{name}", "/info/extensions/Cite?uselang=de-at", {}),
        ("/info/{kind}/{name}", "/info/extensions/Cite?uselang=qqq", {}),
        ("/info/{kind}", "/info/extensions?names=Cite|Links&uselang=fr", {}),
        ("/stats/{kind}", "/stats/extensions", {}), ("/stats/{kind}", "/stats/nope", {}),
        ("/stats/{kind}/{name}", "/stats/extensions/Cite", {}), ("/stats/{kind}/{name}", "/stats/extensions/Nope", {}),
        ("/browse", "/browse", {}), ("/browse", "/browse?q=cite&sort=downloads&uselang=de", {}),
        ("/browse", "/browse?sort=size", {}), ("/browse/{kind}", "/browse/skins", {"Accept-Language": "de"}),
        ("/browse/{kind}", "/browse/nope", {}), ("/browse/{kind}/{name}", "/browse/extensions/Cite", {}),
        ("/browse/{kind}/{name}", "/browse/extensions/Broken", {}),
        ("/browse/{kind}/{name}", "/browse/extensions/Nope", {}),
    ]
    statuses = set()
    for path, url, headers in requests:
        with client.get(url, headers=headers) as response:
            validate_answer(document, path, response)
        statuses.add(response.status_code)
        etag = response.headers.get("ETag")
        if response.status_code == 200 and etag:
            with client.get(url, headers={**headers, "If-None-Match": etag}) as again:
                assert again.status_code == 304, url
                validate_answer(document, path, again)
    assert statuses == {200, 206, 302, 400, 404, 416}
    wrong_method = client.post("/list")
    assert wrong_method.status_code == 405
    assert "405" in document["paths"]["/list"]["get"]["responses"]
    jsonschema.validate(wrong_method.get_json(), document["components"]["schemas"]["Error"])


def test_answers_before_any_sync_match_the_document(deployment):
    client = deployment.app().test_client()
    document = client.get("/openapi.json").get_json()
    for path, url in [("/", "/"), ("/list", "/list"), ("/list/{kind}", "/list/extensions"),
                      ("/info/{kind}", "/info/extensions"), ("/info/{kind}/{name}", "/info/extensions/Cite"),
                      ("/status", "/status"), ("/download/{kind}/{name}/{branch}", "/download/skins/V/master"),
                      ("/gerrit/projects/", "/gerrit/projects/?p=mediawiki/skins/"),
                      ("/gerrit/projects/{project}/branches", "/gerrit/projects/mediawiki%2Fskins%2FV/branches"),
                      ("/stats/{kind}", "/stats/extensions"), ("/stats/{kind}/{name}", "/stats/extensions/Cite"),
                      ("/browse", "/browse"), ("/browse/{kind}", "/browse/skins"),
                      ("/browse/{kind}/{name}", "/browse/skins/Vector")]:
        validate_answer(document, path, client.get(url))
