"""/openapi.json: the OpenAPI 3 description of every endpoint and answer."""

from __future__ import annotations

from importlib.metadata import version

from flask import Blueprint, Response

from tardist.api import respond

bp = Blueprint("openapi", __name__)

NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$", "maxLength": 100}
KIND = {"type": "string", "pattern": "^[a-z][a-z0-9]*$", "maxLength": 32}
NULLABLE_STRING = {"type": ["string", "null"]}
FILE = {"type": "string", "pattern": "^[^/.][^/]*\\.tar\\.gz$", "maxLength": 300}


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, schema: dict, cached: bool = True) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    if cached:
        answer["headers"] = CACHE_HEADERS
    return answer


def _path_param(name: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema}


CACHE_HEADERS = {
    "ETag": {"description": "Changes when the answer changes", "required": True, "schema": {"type": "string"}},
    "Cache-Control": {"description": "How long caches may keep the answer", "required": True,
                      "schema": {"type": "string"}},
}
IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False,
                 "description": "ETags the client has; 304 when the answer's ETag is one of them",
                 "schema": {"type": "string"}}
NOT_MODIFIED = {"description": "Not modified (If-None-Match matched the ETag)"}
COMMON = {"304": NOT_MODIFIED, "405": _error("Method not allowed"), "500": _error("Internal error"),
          "503": _error("The database is older than this tardist: `tardist init-db` migrates it")}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {
            "type": "object", "required": ["status", "message"], "additionalProperties": False,
            "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}},
    },
    "Branch": {
        "type": "object",
        "required": ["commit", "sha7", "committed_at", "tarball", "url", "size", "sha256", "built_at",
                     "version", "requires", "manifest_errors", "warnings", "vendor"],
        "properties": {
            "commit": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
            "sha7": {"type": "string", "pattern": "^[0-9a-f]{7}$"},
            "committed_at": {"type": "string", "format": "date-time"},
            "tarball": {"type": "string"},
            "url": {"type": "string"},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "built_at": {"type": "string", "format": "date-time"},
            "version": NULLABLE_STRING,
            "requires": {"type": "object"},
            "manifest_errors": {"type": "array", "items": {"type": "string"}},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "vendor": {"type": "array", "description": "packages composer bundled in vendor/", "items": {
                "type": "object", "required": ["name", "version"], "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "version": {"type": "string"}}}},
        },
    },
    "Repository": {
        "type": "object",
        "required": ["name", "kind", "repository", "description", "license", "url", "authors", "type",
                     "branches", "errors", "error", "checked_at"],
        "properties": {
            "name": {"type": "string"}, "kind": {"type": "string"}, "repository": {"type": "string"},
            "description": NULLABLE_STRING, "license": NULLABLE_STRING, "url": NULLABLE_STRING,
            "authors": {"type": "array", "items": {"type": "string"}}, "type": NULLABLE_STRING,
            "branches": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Branch"}},
            "errors": {"type": "object", "additionalProperties": {"type": "string"}},
            "error": NULLABLE_STRING, "checked_at": NULLABLE_STRING,
        },
    },
    "Names": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    "Repositories": {"type": "object", "additionalProperties": {
        "type": "object", "additionalProperties": {"$ref": "#/components/schemas/Repository"}}},
    "Status": {
        "type": "object", "required": ["runs", "counts", "repository_errors", "branch_errors"],
        "properties": {"runs": {"type": "array", "items": {"type": "object"}}, "counts": {"type": "object"},
                       "repository_errors": {"type": "array", "items": {"type": "object"}},
                       "branch_errors": {"type": "array", "items": {"type": "object"}}},
    },
    "Index": {"type": "object", "required": ["service", "version", "endpoints"],
              "properties": {"service": {"type": "string"}, "version": {"type": "string"},
                             "endpoints": {"type": "object", "additionalProperties": {"type": "string"}}}},
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def document() -> dict:
    """The OpenAPI document."""
    kind, name = _path_param("kind", KIND), _path_param("name", NAME)
    return {
        "openapi": "3.1.0",
        "info": {"title": "tardist", "version": version("tardist"),
                 "description": "Tarballs of plugin repositories and what their manifests say."},
        "paths": {
            "/": {"get": {"summary": "Service name, version and endpoints", "parameters": [IF_NONE_MATCH],
                          "responses": {"200": _json("The index", _ref("Index")), **COMMON}}},
            "/list": {"get": {"summary": "Repository names of every kind", "parameters": [IF_NONE_MATCH],
                              "responses": {"200": _json("Names by kind", _ref("Names")), **COMMON}}},
            "/list/{kind}": {"get": {
                "summary": "Repository names of one kind", "parameters": [kind, IF_NONE_MATCH],
                "responses": {"200": _json("Names", _ref("Names")), "404": _error("Unknown kind"), **COMMON}}},
            "/info/{kind}": {"get": {
                "summary": "Every repository of a kind, or the ones named",
                "parameters": [kind, {"name": "names", "in": "query", "required": False,
                                      "description": "names separated by |",
                                      "schema": {"type": "string", "maxLength": 60_000}}, IF_NONE_MATCH],
                "responses": {"200": _json("Repositories by kind and name", _ref("Repositories")),
                              "400": _error("Bad names or an unknown query parameter"),
                              "404": _error("Unknown kind"), **COMMON}}},
            "/info/{kind}/{name}": {"get": {
                "summary": "One repository", "parameters": [kind, name, IF_NONE_MATCH],
                "responses": {"200": _json("The repository", _ref("Repository")),
                              "404": _error("Unknown kind or name"), **COMMON}}},
            "/download/{kind}/{name}/{branch}": {"get": {
                "summary": "Redirect to the current tarball of a branch",
                "parameters": [kind, name, _path_param("branch", NAME)],
                "responses": {"302": {"description": "Location is the tarball URL",
                                      "headers": {"Location": {"required": True, "schema": {"type": "string"}}}},
                              "404": _error("Unknown kind, name or branch"), **COMMON}}},
            "/status": {"get": {"summary": "Last runs, counts and errors", "parameters": [IF_NONE_MATCH],
                                "responses": {"200": _json("Status", _ref("Status")), **COMMON}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _json("The OpenAPI document", {"type": "object"}), **COMMON}}},
            "/dist/{kind}/{file}": {"get": {
                "summary": "A tarball (served by the app only when nginx does not serve tarballs/)",
                "parameters": [kind, _path_param("file", FILE)],
                "responses": {"200": {"description": "The tarball",
                                      "content": {"application/gzip": {"schema": {}}}},
                              "206": {"description": "Part of the tarball (Range)"},
                              "404": _error("No such tarball"),
                              "416": _error("Range not satisfiable"), **COMMON}}},
        },
        "components": {"schemas": SCHEMAS},
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI document, with an ETag like every JSON answer."""
    return respond("/openapi.json", lambda conn: document())
