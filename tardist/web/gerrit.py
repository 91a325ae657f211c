"""/gerrit/projects/...: Gerrit's REST shapes, so ExtensionDistributor's GerritExtDistProvider can use tardist.

ExtensionDistributor reads the repository list (`repoListUrl`) and each
repository's branch heads (`apiUrl`) from Gerrit, then links to
`<Name>-<branch>-<sha7>.tar.gz` on its own. Answering both from what tardist
has built means every link it makes names a tarball that exists. Projects are
named `mediawiki/<kind>/<Name>`, as on Wikimedia's Gerrit.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from werkzeug.exceptions import BadRequest, NotFound

from tardist import answers
from tardist.layout import is_kind, is_plain_name
from tardist.web import context
from tardist.web.responses import respond

bp = Blueprint("gerrit", __name__, url_prefix="/gerrit")
MAX_PREFIX = 200


# The bodies come from tardist.answers, which the worker also uses to write published/.
@bp.get("/projects/")
def projects() -> Response:
    """Gerrit's project list: every `mediawiki/<kind>/<Name>` with a tarball whose name starts with ?p=."""
    unknown = set(request.args) - {"p", "b"}
    if unknown:
        raise BadRequest(f"unknown query parameter {sorted(unknown)[0]!r} (only 'p' and 'b' are accepted)")
    prefix = request.args.get("p", "")  # b (a branch the projects must have) is accepted and ignored
    if len(prefix) > MAX_PREFIX:
        raise BadRequest(f"p: at most {MAX_PREFIX} characters")
    return respond(f"/gerrit/projects/?p={prefix}",
                   lambda conn: answers.gerrit_projects(conn, context.settings().branches, prefix))


@bp.get("/projects/<path:project>/branches")
def branches(project: str) -> Response:
    """Gerrit's branch list of one project: the configured branches that have a tarball, at its commit.

    Clients send the project as `mediawiki%2F<kind>%2F<Name>`; the WSGI server has
    already decoded `%2F` into `/`, which the path converter takes whole.
    """
    parts = project.split("/")
    if len(parts) != 3 or parts[0] != answers.GERRIT_ROOT or not is_kind(parts[1]) or not is_plain_name(parts[2]):
        raise NotFound(f"no project {project[:200]!r} (projects are named {answers.GERRIT_ROOT}/<kind>/<Name>)")
    kind, name = parts[1], parts[2]
    return respond(f"/gerrit/projects/{kind}/{name}/branches",
                   lambda conn: answers.gerrit_branches(conn, context.settings().branches, kind, name))
