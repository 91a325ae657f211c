"""/gerrit/projects/...: Gerrit's REST shapes, so ExtensionDistributor's GerritExtDistProvider can use tardist.

ExtensionDistributor reads the repository list (`repoListUrl`) and each
repository's branch heads (`apiUrl`) from Gerrit, then links to
`<Name>-<branch>-<sha7>.tar.gz` on its own. Answering both from what tardist
has built means every link it makes names a tarball that exists. Projects are
named `mediawiki/<kind>/<Name>`, as on Wikimedia's Gerrit.
"""

from __future__ import annotations

import json
import sqlite3

from flask import Blueprint, Response
from flask import request
from werkzeug.exceptions import BadRequest, NotFound

from tardist.api import respond, settings
from tardist.settings import is_kind, is_plain_name

bp = Blueprint("gerrit", __name__, url_prefix="/gerrit")
XSSI_PREFIX = b")]}'\n"  # Gerrit's first line; clients strip the first 4 characters (and the newline)
PROJECT_ROOT = "mediawiki"
MAX_PREFIX = 200


def _gerrit_body(value: object) -> bytes:
    """A Gerrit REST answer: the XSSI line, then compact JSON."""
    return XSSI_PREFIX + json.dumps(value, separators=(",", ":")).encode()


def _built(conn: sqlite3.Connection | None, kind: str | None = None,
           name: str | None = None) -> dict[tuple[str, str], dict[str, str]]:
    """(kind, name) -> {branch: commit} of present repositories' configured branches that have a tarball."""
    if conn is None:
        return {}
    branches = settings().branches
    where, params = ["r.present = 1", "b.tarball IS NOT NULL", "b.commit_sha IS NOT NULL",
                     f"b.branch IN ({', '.join('?' * len(branches))})"], list(branches)
    if kind is not None:
        where.append("r.kind = ?")
        params.append(kind)
    if name is not None:
        where.append("r.name = ?")
        params.append(name)
    rows = conn.execute("SELECT r.kind, r.name, b.branch, b.commit_sha FROM branches b JOIN repos r "
                        f"USING (kind, name) WHERE {' AND '.join(where)} ORDER BY r.kind, r.name", params)
    built: dict[tuple[str, str], dict[str, str]] = {}
    for row_kind, row_name, branch, commit in rows:
        built.setdefault((row_kind, row_name), {})[branch] = commit
    return built


@bp.get("/projects/")
def projects() -> Response:
    """Gerrit's project list: every `mediawiki/<kind>/<Name>` with a tarball whose name starts with ?p=."""
    unknown = set(request.args) - {"p", "b"}
    if unknown:
        raise BadRequest(f"unknown query parameter {sorted(unknown)[0]!r} (only 'p' and 'b' are accepted)")
    prefix = request.args.get("p", "")  # b (a branch the projects must have) is accepted and ignored
    if len(prefix) > MAX_PREFIX:
        raise BadRequest(f"p: at most {MAX_PREFIX} characters")
    parts = prefix.split("/")
    # Only the kind named by the prefix is read: one SQL query, whatever the number of kinds.
    kind = parts[1] if len(parts) > 2 and parts[0] == PROJECT_ROOT else None

    def compute(conn):
        found = {}
        for (row_kind, row_name) in _built(conn, kind if kind and is_kind(kind) else None):
            project = f"{PROJECT_ROOT}/{row_kind}/{row_name}"
            if project.startswith(prefix):
                found[project] = {"id": project.replace("/", "%2F"), "state": "ACTIVE"}
        return _gerrit_body(found)
    return respond(f"/gerrit/projects/?p={prefix}", compute)


@bp.get("/projects/<path:project>/branches")
def branches(project: str) -> Response:
    """Gerrit's branch list of one project: the configured branches that have a tarball, at its commit.

    Clients send the project as `mediawiki%2F<kind>%2F<Name>`; the WSGI server has
    already decoded `%2F` into `/`, which the path converter takes whole.
    """
    parts = project.split("/")
    if len(parts) != 3 or parts[0] != PROJECT_ROOT or not is_kind(parts[1]) or not is_plain_name(parts[2]):
        raise NotFound(f"no project {project[:200]!r} (projects are named {PROJECT_ROOT}/<kind>/<Name>)")
    kind, name = parts[1], parts[2]

    def compute(conn):
        heads = _built(conn, kind, name).get((kind, name))
        if not heads:
            raise NotFound(f"no project {project!r}: no {kind} named {name!r} has a tarball")
        branches = [branch for branch in settings().branches if branch in heads]
        # Gerrit lists HEAD first, naming the default branch; its clients skip it (not refs/heads/).
        head = [{"ref": "HEAD", "revision": settings().branches[0]}] if settings().branches[0] in heads else []
        return _gerrit_body(head + [{"ref": f"refs/heads/{branch}", "revision": heads[branch]}
                                    for branch in branches])
    return respond(f"/gerrit/projects/{kind}/{name}/branches", compute)
