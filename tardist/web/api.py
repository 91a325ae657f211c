"""The JSON API: /, /list, /info, /download, /status."""

from __future__ import annotations

import json
from importlib.metadata import version

from flask import Blueprint, Response, redirect, request
from werkzeug.exceptions import BadRequest, NotFound

from tardist import answers, queries
from tardist.info import localize
from tardist.languages import fallbacks
from tardist.layout import is_plain_name
from tardist.web import context
from tardist.web.context import configured_kinds
from tardist.web.responses import parse_uselang, prefers_html, respond

bp = Blueprint("api", __name__)
MAX_NAMES = 500


@bp.get("/")
def index() -> Response:
    """Service name, version and the endpoints; browsers are sent to /browse."""
    if prefers_html():
        response = redirect("/browse", code=302)
        response.headers["Vary"] = "Accept"
        response.headers["Cache-Control"] = f"public, max-age={context.settings().cache_seconds}"
        return response
    return respond("/", lambda conn: {
        "service": "tardist",
        "version": version("tardist"),
        "endpoints": {
            "list": "/list", "list_kind": "/list/<kind>", "info": "/info/<kind>/<name>",
            "info_batch": "/info/<kind>?names=A|B", "download": "/download/<kind>/<name>/<branch>",
            "status": "/status", "tarballs": f"{context.settings().tarball_url}/<kind>/<file>",
            "openapi": "/openapi.json", "stats": "/stats/<kind>", "stats_repository": "/stats/<kind>/<name>",
            "browse": "/browse",
        },
    }, vary="Accept")


# The bodies of /list and /info come from tardist.answers, which the worker also uses to write
# published/: the files and these answers are the same bytes. Its answers.Missing is a 404 (errors.py).
@bp.get("/list")
def list_all() -> Response:
    """Every kind with its repository names."""
    return respond("/list", lambda conn: answers.list_all(conn, configured_kinds()))


@bp.get("/list/<kind>")
def list_kind(kind: str) -> Response:
    """The repository names of one kind, by name or (?sort=downloads) by downloads in the last 30 days."""
    sort = request.args.get("sort", "name")
    if sort not in ("name", "downloads"):
        raise BadRequest(f"sort: expected name or downloads, got {sort[:100]!r}")
    if sort == "name":
        return respond(f"/list/{kind}", lambda conn: answers.list_kind(conn, configured_kinds(), kind))
    today = queries.utc_today()

    def compute(conn):
        answers.check_kind(conn, configured_kinds(), kind)
        names = queries.present_names(conn).get(kind, []) if conn else []
        if conn is not None:
            totals = queries.download_totals(conn, kind, queries.first_day(today))
            names.sort(key=lambda name: -totals.get(name, (0, 0))[0])  # stable: ties stay by name
        return {kind: names}
    return respond(f"/list/{kind}?sort=downloads@{today}", compute)


@bp.get("/info/<kind>/<name>")
def info(kind: str, name: str) -> Response:
    """Everything about one repository, its description in ?uselang= if given."""
    lang = parse_uselang(request.args)
    if lang is None:
        return respond(f"/info/{kind}/{name}", lambda conn: answers.info_one(conn, configured_kinds(), kind, name))

    def compute(conn):
        answer = answers.info_one(conn, configured_kinds(), kind, name).decode()
        return localize(answer, queries.translations(conn, kind, fallbacks(lang), [name]).get(name)).encode()
    return respond(f"/info/{kind}/{name}?uselang={lang}", compute)


@bp.get("/info/<kind>")
def info_kind(kind: str) -> Response:
    """Every repository of a kind, or those named in ?names=A|B."""
    names = parse_names(request.args)
    lang = parse_uselang(request.args)
    key = f"/info/{kind}" if names is None else f"/info/{kind}?names={'|'.join(names)}"
    if lang is None:
        return respond(key, lambda conn: answers.info_kind(conn, configured_kinds(), kind, names))

    def compute(conn):
        answers.check_kind(conn, configured_kinds(), kind)
        rows = queries.info_json(conn, kind, names) if conn else []
        found = queries.translations(conn, kind, fallbacks(lang), names) if conn else {}
        # The stored answers are JSON already: join them instead of decoding and encoding again.
        inner = ",".join(f"{json.dumps(name)}:{localize(answer, found.get(name))}"
                         for name, answer in rows if answer is not None)
        return f'{{{json.dumps(kind)}:{{{inner}}}}}'.encode()
    return respond(key + ("&" if names is not None else "?") + f"uselang={lang}", compute)


def parse_names(args) -> list[str] | None:
    """The ?names=A|B of a batch lookup, checked; None when absent."""
    unknown = set(args) - {"names", "uselang"}
    if unknown:
        raise BadRequest(f"unknown query parameter {sorted(unknown)[0]!r} (only 'names' and 'uselang' "
                         "are accepted)")
    if "names" not in args:
        return None
    if len(args.getlist("names")) > 1:
        raise BadRequest("names: give it once, with names separated by '|'")
    names = sorted(set(args.get("names", "").split("|")) - {""})
    if not names:
        raise BadRequest("names: expected repository names separated by '|'")
    if len(names) > MAX_NAMES:
        raise BadRequest(f"names: at most {MAX_NAMES} names at once")
    bad = [n for n in names if not is_plain_name(n)]
    if bad:
        raise BadRequest(f"names: {bad[0][:100]!r} is not a repository name")
    return names


@bp.get("/download/<kind>/<name>/<branch>")
def download(kind: str, name: str, branch: str) -> Response:
    """302 to the current tarball of a branch: the stable URL people hard-code."""
    def compute(conn):
        branches = json.loads(answers.info_one(conn, configured_kinds(), kind, name))["branches"]
        if branch not in branches:
            raise NotFound(f"{kind}/{name} has no tarball for branch {branch[:100]!r}")
        return branches[branch]["url"]
    answer = context.reader().answer(f"/download/{kind}/{name}/{branch}", compute)
    response = redirect(json.loads(answer.body), code=302)
    response.headers["Cache-Control"] = f"public, max-age={min(context.settings().cache_seconds, 60)}"
    return response


@bp.get("/status")
def status() -> Response:
    """Last runs, counts and what is in error (as `tardist status`)."""
    def compute(conn):
        if conn is None:
            return {"runs": [], "counts": {}, "repository_errors": [], "branch_errors": []}
        return queries.status(conn)
    return respond("/status", compute, max_age=0)
