"""/openapi.json: the OpenAPI 3 description of every endpoint and answer."""

from __future__ import annotations

from importlib.metadata import version

from flask import Blueprint, Response

from tardist.web.responses import respond

bp = Blueprint("openapi", __name__)

NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$", "maxLength": 100}
KIND = {"type": "string", "pattern": "^[a-z][a-z0-9]*$", "maxLength": 32}
NULLABLE_STRING = {"type": ["string", "null"]}
COUNT = {"type": "integer", "minimum": 0}
FILE = {"type": "string", "pattern": "^[^/.][^/]*\\.tar\\.gz$", "maxLength": 300}


GERRIT_NOTE = ("As Gerrit answers: the body is the line )]}' and then the JSON described here; "
               "project names are mediawiki/<kind>/<Name>, sent with / encoded as %2F.")


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, schema: dict, cached: bool = True) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    if cached:
        answer["headers"] = CACHE_HEADERS
    return answer


def _html(description: str) -> dict:
    return {"description": description, "headers": CACHE_HEADERS,
            "content": {"text/html": {"schema": {"type": "string"}}}}


def _path_param(name: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema}


CACHE_HEADERS = {
    "ETag": {"description": "Changes when the answer changes", "required": True, "schema": {"type": "string"}},
    "Cache-Control": {"description": "How long caches may keep the answer", "required": True,
                      "schema": {"type": "string"}},
}
USELANG = {"name": "uselang", "in": "query", "required": False,
           "description": "language of description (de, de-at, ...); falls back to its parents, then English",
           "schema": {"type": "string", "pattern": "^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{1,8}){0,4}$"}}
SORT = {"name": "sort", "in": "query", "required": False, "description": "name, or downloads in the last 30 days",
        "schema": {"type": "string", "enum": ["name", "downloads"]}}
QUERY = {"name": "q", "in": "query", "required": False,
         "description": "words that must all be in the name or description", "schema": {"type": "string",
                                                                                         "maxLength": 200}}
ACCEPT_LANGUAGE = {"name": "Accept-Language", "in": "header", "required": False,
                   "description": "the reader's languages, used when uselang is absent", "schema": {"type": "string"}}
IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False,
                 "description": "ETags the client has; 304 when the answer's ETag is one of them",
                 "schema": {"type": "string"}}
NOT_MODIFIED = {"description": "Not modified (If-None-Match matched the ETag)"}
COMMON = {"304": NOT_MODIFIED, "405": _error("Method not allowed"), "500": _error("Internal error"),
          "503": _error("The database's schema is not this tardist's: older (`tardist init-db` migrates "
                        "it) or newer (made by a newer tardist)")}

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
        "required": ["name", "kind", "repository", "description", "description_text", "license", "url", "authors",
                     "type", "branches", "errors", "error", "failures"],
        "properties": {
            "name": {"type": "string"}, "kind": {"type": "string"}, "repository": NULLABLE_STRING,
            "description": NULLABLE_STRING,
            "description_text": {"type": ["string", "null"],
                                 "description": "description (wikitext) as plain text, as a wiki shows it"},
            "description_lang": {"type": ["string", "null"],
                                 "description": "with ?uselang: the language description is in"},
            "license": NULLABLE_STRING, "url": NULLABLE_STRING,
            "authors": {"type": "array", "items": {"type": "string"}}, "type": NULLABLE_STRING,
            "branches": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Branch"}},
            "errors": {"type": "object", "additionalProperties": {"type": "string"}},
            "error": NULLABLE_STRING,
            "failures": {"type": "array", "description": "each reason once, with the branches it stops "
                                                         "(none: the whole repository) and when it is retried",
                         "items": {"type": "object", "required": ["branches", "error", "retry_at"],
                                   "properties": {"branches": {"type": "array", "items": {"type": "string"}},
                                                  "error": {"type": "string"}, "retry_at": NULLABLE_STRING}}},
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
    "GerritProjects": {"type": "object", "additionalProperties": {
        "type": "object", "required": ["id", "state"],
        "properties": {"id": {"type": "string"}, "state": {"const": "ACTIVE"}}}},
    "GerritBranches": {"type": "array", "items": {
        "type": "object", "required": ["ref", "revision"],
        "description": "HEAD (revision: the default branch's name) first, then refs/heads/<branch> at a commit",
        "properties": {"ref": {"type": "string", "pattern": "^(HEAD|refs/heads/.+)$"},
                       "revision": {"type": "string"}}}},
    "Queued": {"type": "object", "required": ["queued"], "properties": {"queued": {"type": "array", "items": {
        "type": "object", "required": ["kind", "name"],
        "properties": {"kind": {"type": "string"}, "name": {"type": "string"}}}}}},
    "KindDownloads": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": {
        "type": "object", "required": ["last_30_days", "all_time"], "additionalProperties": False,
        "properties": {"last_30_days": COUNT, "all_time": COUNT}}}},
    "RepositoryDownloads": {
        "type": "object", "required": ["name", "kind", "last_30_days", "all_time", "branches"],
        "properties": {
            "name": {"type": "string"}, "kind": {"type": "string"}, "last_30_days": COUNT, "all_time": COUNT,
            "branches": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["last_30_days", "all_time", "days"],
                "properties": {"last_30_days": COUNT, "all_time": COUNT,
                               "days": {"type": "object", "propertyNames": {"format": "date"},
                                        "additionalProperties": COUNT}}}}}},
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
            "/": {"get": {"summary": "Service name, version and endpoints (browsers are sent to /browse)",
                          "parameters": [IF_NONE_MATCH],
                          "responses": {"200": _json("The index", _ref("Index")),
                                        "302": {"description": "To /browse, when Accept prefers text/html",
                                                "headers": {"Location": {"required": True,
                                                                         "schema": {"type": "string"}}}},
                                        **COMMON}}},
            "/list": {"get": {"summary": "Repository names of every kind", "parameters": [IF_NONE_MATCH],
                              "responses": {"200": _json("Names by kind", _ref("Names")), **COMMON}}},
            "/list/{kind}": {"get": {
                "summary": "Repository names of one kind", "parameters": [kind, SORT, IF_NONE_MATCH],
                "responses": {"200": _json("Names", _ref("Names")), "400": _error("An unknown sort"),
                              "404": _error("Unknown kind"), **COMMON}}},
            "/stats/{kind}": {"get": {
                "summary": "Downloads per repository of a kind: last 30 days and all time",
                "parameters": [kind, IF_NONE_MATCH],
                "responses": {"200": _json("Downloads by kind and name", _ref("KindDownloads")),
                              "404": _error("Unknown kind"), **COMMON}}},
            "/stats/{kind}/{name}": {"get": {
                "summary": "Downloads of one repository per branch per day, and totals",
                "parameters": [kind, name, IF_NONE_MATCH],
                "responses": {"200": _json("Downloads", _ref("RepositoryDownloads")),
                              "404": _error("Unknown kind or name"), **COMMON}}},
            "/browse": {"get": {
                "summary": "Page: every repository, searchable and sortable",
                "parameters": [QUERY, SORT, USELANG, ACCEPT_LANGUAGE, IF_NONE_MATCH],
                "responses": {"200": _html("The page"), "400": _error("A bad q, sort or uselang"), **COMMON}}},
            "/browse/{kind}": {"get": {
                "summary": "Page: the repositories of one kind",
                "parameters": [kind, QUERY, SORT, USELANG, ACCEPT_LANGUAGE, IF_NONE_MATCH],
                "responses": {"200": _html("The page"), "400": _error("A bad q, sort or uselang"),
                              "404": _error("Unknown kind"), **COMMON}}},
            "/browse/{kind}/{name}": {"get": {
                "summary": "Page: one repository, its tarballs and downloads",
                "parameters": [kind, name, USELANG, ACCEPT_LANGUAGE, IF_NONE_MATCH],
                "responses": {"200": _html("The page"), "400": _error("A bad uselang"),
                              "404": _error("Unknown kind or name"), **COMMON}}},
            "/info/{kind}": {"get": {
                "summary": "Every repository of a kind, or the ones named",
                "parameters": [kind, {"name": "names", "in": "query", "required": False,
                                      "description": "names separated by |",
                                      "schema": {"type": "string", "maxLength": 60_000}}, USELANG, IF_NONE_MATCH],
                "responses": {"200": _json("Repositories by kind and name", _ref("Repositories")),
                              "400": _error("Bad names or an unknown query parameter"),
                              "404": _error("Unknown kind"), **COMMON}}},
            "/info/{kind}/{name}": {"get": {
                "summary": "One repository", "parameters": [kind, name, USELANG, IF_NONE_MATCH],
                "responses": {"200": _json("The repository", _ref("Repository")),
                              "400": _error("An invalid uselang"),
                              "404": _error("Unknown kind or name"), **COMMON}}},
            "/download/{kind}/{name}/{branch}": {"get": {
                "summary": "Redirect to the current tarball of a branch",
                "parameters": [kind, name, _path_param("branch", NAME)],
                "responses": {"302": {"description": "Location is the tarball URL",
                                      "headers": {"Location": {"required": True, "schema": {"type": "string"}}}},
                              "404": _error("Unknown kind, name or branch"), **COMMON}}},
            "/status": {"get": {"summary": "Last runs, counts and errors", "parameters": [IF_NONE_MATCH],
                                "responses": {"200": _json("Status", _ref("Status")), **COMMON}}},
            "/gerrit/projects/": {"get": {
                "summary": "Gerrit's project list, for ExtensionDistributor's repoListUrl",
                "description": GERRIT_NOTE,
                "parameters": [{"name": "p", "in": "query", "required": False,
                                "description": "project name prefix, e.g. mediawiki/extensions/",
                                "schema": {"type": "string", "maxLength": 200}},
                               {"name": "b", "in": "query", "required": False,
                                "description": "accepted and ignored", "schema": {"type": "string"}},
                               IF_NONE_MATCH],
                "responses": {"200": _json("Projects that have a tarball, by name", _ref("GerritProjects")),
                              "400": _error("An unknown query parameter or a too long prefix"), **COMMON}}},
            "/gerrit/projects/{project}/branches": {"get": {
                "summary": "Gerrit's branch list of a project, for ExtensionDistributor's apiUrl",
                "description": GERRIT_NOTE,
                "parameters": [{**_path_param("project", {
                    "type": "string", "minLength": 1, "maxLength": 200,
                    "pattern": "^mediawiki%2F[a-z][a-z0-9]*%2F[A-Za-z0-9][A-Za-z0-9_.-]*$"}),
                    "description": "the project name with / encoded as %2F",
                    "examples": {"Cite": {"value": "mediawiki%2Fextensions%2FCite"}}}, IF_NONE_MATCH],
                "responses": {"200": _json("Branches that have a tarball, at the tarball's commit",
                                           _ref("GerritBranches")),
                              "404": _error("Unknown project, or one without a tarball"), **COMMON}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _json("The OpenAPI document", {"type": "object"}), **COMMON}}},
            "/dist/{kind}/{file}": {"get": {
                "summary": "A tarball (served by the app only when nginx does not serve tarballs/); "
                           "a missing one that names a branch's current head is built first",
                "parameters": [kind, _path_param("file", FILE)],
                "responses": {"200": {"description": "The tarball",
                                      "content": {"application/gzip": {"schema": {}}}},
                              "206": {"description": "Part of the tarball (Range)"},
                              "404": _error("No such tarball, and it does not name a branch's current head"),
                              "416": _error("Range not satisfiable"), **COMMON,
                              "503": _error("Not built within build_wait seconds (see Retry-After), "
                                            "or the database needs `tardist init-db`")}}},
            "/hooks/push": {"post": {
                "summary": "A push webhook (GitHub, Gitea, Forgejo, GitLab, Gerrit or tardist's own): "
                           "queue a sync of the pushed repository",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"202": _json("What was queued", _ref("Queued"), cached=False),
                              "200": _json("Nothing applies (a branch tardist does not build)", _ref("Queued"),
                                           cached=False),
                              "400": _error("Not a push event"), "401": _error("Missing or wrong signature"),
                              "404": _error("Webhooks are not enabled, or no configured repository matches"),
                              "413": _error("Body over 1 MiB"), **COMMON}}},
        },
        "components": {"schemas": SCHEMAS},
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI document, with an ETag like every JSON answer."""
    return respond("/openapi.json", lambda conn: document())
