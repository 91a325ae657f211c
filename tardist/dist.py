"""/dist/<kind>/<file>: tarballs, and building a missing one on demand when it names a branch's current head.

In production nginx serves the files and passes a miss here (with the header
`X-Accel-Prefix` naming its internal location, which then serves the file once
built); under `flask run` this route serves the files too (`serve_tarballs`).
The web app never runs git: the remote head check and the build are requests
for `tardist worker` (tardist/queue.py), and every cheap check comes first.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from flask import Blueprint, Response, current_app, request, send_from_directory
from werkzeug.exceptions import NotFound, ServiceUnavailable

from tardist import catalog
from tardist.queue import HEADS, SYNC, Queue
from tardist.settings import Settings, is_kind, is_plain_name

bp = Blueprint("dist", __name__)
# <Name>-<branch>-<sha7>.tar.gz; names may hold '-', branches may not.
FILE_RE = re.compile(r"^(?P<name>.+)-(?P<branch>[A-Za-z0-9][A-Za-z0-9_.]*)-(?P<sha7>[0-9a-f]{7})\.tar\.gz$")
PREFIX_RE = re.compile(r"^/[A-Za-z0-9_/-]*/$")
RETRY_AFTER = 10
POLL_SECONDS = 0.1


@bp.get("/dist/<kind>/<file>")
def tarball(kind: str, file: str) -> Response:
    """One tarball file (built first if it is a branch's current head); names never change content."""
    settings: Settings = current_app.extensions["tardist.settings"]
    prefix = request.headers.get("X-Accel-Prefix", "")
    behind_nginx = bool(PREFIX_RE.fullmatch(prefix))
    if (not is_kind(kind) or not file.endswith(".tar.gz") or file.startswith(".") or len(file) > 255
            or not (behind_nginx or settings.serve_tarballs)):
        raise NotFound(f"no tarball {kind[:100]}/{file[:100]}")
    if not (settings.tarballs / kind / file).is_file():
        build_on_demand(settings, kind, file)
    if behind_nginx:
        return Response(mimetype="application/gzip", headers={"X-Accel-Redirect": f"{prefix}{kind}/{file}"})
    response = send_from_directory(settings.tarballs / kind, file, mimetype="application/gzip",
                                   max_age=365 * 24 * 3600)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


def build_on_demand(settings: Settings, kind: str, file: str) -> None:
    """Return once the missing tarball file exists; 404 unless it names a branch's current head, 503 on timeout."""
    match = FILE_RE.fullmatch(file)
    if not match or not is_plain_name(match["name"]) or match["branch"] not in settings.branches:
        raise NotFound(f"no tarball {kind}/{file[:100]}")
    name, branch, sha7 = match["name"], match["branch"], match["sha7"]
    conn = current_app.extensions["tardist.reader"].connection()
    if catalog.find(settings, conn, kind, name) is None:
        raise NotFound(f"no {kind} named {name!r}")
    queue = current_app.extensions["tardist.queue"]
    if not queue.worker_running():  # cron-only deployments: nobody to build it
        raise NotFound(f"no tarball {kind}/{file} (and no tardist worker runs to build it)")
    deadline = time.monotonic() + settings.build_wait
    heads = queue.fresh_heads(kind, name)
    if heads is None:
        answered = queue.wait(queue.request(HEADS, kind, name, reason="build"), settings.build_wait)
        if answered is None or answered.result is None:
            raise _busy(f"could not check the branch heads of {kind}/{name} in time; try again shortly")
        heads = answered.result
    if "heads" not in heads:
        raise _busy(f"could not check the branch heads of {kind}/{name}: {heads.get('error')}")
    head = heads["heads"].get(branch)
    if head is None or not head.startswith(sha7):
        raise NotFound(f"{sha7} is not the current head of {kind}/{name} {branch}")
    _wait_for_build(queue, queue.request(SYNC, kind, name, reason="build"),
                    settings.tarballs / kind / file, deadline, f"{kind}/{name}")


def _wait_for_build(queue: Queue, request_id: int, path: Path, deadline: float, repo: str) -> None:
    while not path.is_file():
        answered = queue.get(request_id)
        if answered is not None and answered.done_at is not None and not path.is_file():
            raise _busy(f"{path.name} could not be built just now (see /info/{repo} for why)")
        if time.monotonic() >= deadline:
            raise _busy(f"{path.name} is being built; try again shortly")
        time.sleep(POLL_SECONDS)


def _busy(message: str) -> ServiceUnavailable:
    return ServiceUnavailable(message, retry_after=RETRY_AFTER)
