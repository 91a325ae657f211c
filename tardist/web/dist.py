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
from typing import Any

from flask import Blueprint, Response, request, send_from_directory
from werkzeug.exceptions import NotFound, ServiceUnavailable

from tardist import catalog
from tardist.layout import TarballName, is_kind, is_tarball_file, parse_tarball_name, tarball_name, tarball_path
from tardist.queue import HEADS, SYNC, Queue
from tardist.settings import Settings
from tardist.web import context

bp = Blueprint("dist", __name__)
PREFIX_RE = re.compile(r"^/[A-Za-z0-9_/-]*/$")
RETRY_AFTER = 10
POLL_SECONDS = 0.1


@bp.get("/dist/<kind>/<file>")
def tarball(kind: str, file: str) -> Response:
    """One tarball file (built first if it is a branch's current head); names never change content."""
    settings = context.settings()
    prefix = request.headers.get("X-Accel-Prefix", "")
    behind_nginx = bool(PREFIX_RE.fullmatch(prefix))
    if not is_kind(kind) or not is_tarball_file(file) or not (behind_nginx or settings.serve_tarballs):
        raise NotFound(f"no tarball {kind[:100]}/{file[:100]}")
    if not tarball_path(settings, kind, file).is_file():
        build_on_demand(settings, kind, file)
    if behind_nginx:
        return Response(mimetype="application/gzip", headers={"X-Accel-Redirect": f"{prefix}{kind}/{file}"})
    response = send_from_directory(settings.tarballs / kind, file, mimetype="application/gzip",
                                   max_age=365 * 24 * 3600)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


def build_on_demand(settings: Settings, kind: str, file: str) -> None:
    """Return once the missing tarball file exists; 404 unless it names a branch's current head, 503 on timeout."""
    parsed = parse_tarball_name(file)
    if parsed is None or parsed.branch not in settings.branches:
        raise NotFound(f"no tarball {kind}/{file[:100]}")
    name, branch, sha7 = parsed
    conn = context.reader().connection()
    found = catalog.find(settings, conn, kind, name)
    if found is None:
        raise NotFound(f"no {kind} named {name!r}")
    queue = context.queue()
    if not queue.worker_running():  # cron-only deployments: nobody to build it
        raise NotFound(f"no tarball {kind}/{file} (and no tardist worker runs to build it)")
    waiters = context.build_waiters()
    host = catalog.remote_host(found[0])
    if not waiters.enter(host):
        raise _busy(f"too many requests are waiting for builds; try {file} again shortly")
    try:
        arrived = time.time()
        deadline = time.monotonic() + settings.build_wait
        cached = queue.fresh_heads(kind, name)
        heads = _heads(cached, kind, name) if cached else _ask_heads(queue, kind, name, "build", deadline)
        if not _names_head(heads, branch, sha7) and heads["looked_at"] < arrived and not heads["settled"]:
            # Pushed since that answer, maybe: one fresh look, shared by every request of the repository.
            heads = _ask_heads(queue, kind, name, "fresh", deadline)
        if not _names_head(heads, branch, sha7):
            raise NotFound(f"{sha7} is not the current head of {kind}/{name} {branch}")
        _wait_for_build(queue, queue.request(SYNC, kind, name, reason="build"),
                        tarball_path(settings, kind, file), deadline, kind, parsed)
    finally:
        waiters.leave(host)


def _ask_heads(queue: Queue, kind: str, name: str, reason: str, deadline: float) -> dict[str, Any]:
    """The worker's answer to a heads request: 503 when it has none in time or the remote could not be asked."""
    answered = queue.wait(queue.request(HEADS, kind, name, reason=reason), max(0.0, deadline - time.monotonic()))
    if answered is None or answered.result is None:
        raise _busy(f"could not check the branch heads of {kind}/{name} in time; try again shortly")
    return _heads(answered.result, kind, name)


def _heads(answer: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    """A heads answer with its heads, when and how it was looked at; 503 when the remote could not be asked."""
    if "heads" not in answer:
        raise _busy(f"could not check the branch heads of {kind}/{name}: {answer.get('error')}")
    return {"looked_at": 0.0, "settled": False, **answer}


def _names_head(heads: dict[str, Any], branch: str, sha7: str) -> bool:
    head = heads["heads"].get(branch)
    return head is not None and head.startswith(sha7)


def _wait_for_build(queue: Queue, request_id: int, path: Path, deadline: float, kind: str,
                    wanted: TarballName) -> None:
    name, branch, sha7 = wanted
    repo = f"{kind}/{name}"
    while not path.is_file():
        answered = queue.get(request_id)
        if answered is not None and answered.done_at is not None and not path.is_file():
            result = answered.result or {}
            built = result.get("heads", {}).get(branch)
            if built and not built.startswith(sha7):  # pushed to between the head check and the sync
                raise NotFound(f"{sha7} is no longer the head of {repo} {branch}: the branch moved to "
                               f"{built[:7]} ({tarball_name(name, branch, built)})")
            if result.get("error"):
                raise _busy(f"{path.name} could not be built just now: {result['error']}")
            raise _busy(f"{path.name} could not be built just now (see /info/{repo} for why)")
        if time.monotonic() >= deadline:
            raise _busy(f"{path.name} is being built; try again shortly")
        time.sleep(POLL_SECONDS)


def _busy(message: str) -> ServiceUnavailable:
    return ServiceUnavailable(message, retry_after=RETRY_AFTER)
