"""POST /hooks/push: a push webhook queues a sync of the repository it names for `tardist worker`.

Flavours, told apart by how they authenticate:
- GitHub, Gitea, Forgejo: `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>`;
- GitLab: `X-Gitlab-Token: <secret>`;
- Gerrit `ref-updated` events and tardist's own `{"kind": ..., "name": ...}`: `Authorization: Bearer <secret>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest, NotFound, RequestEntityTooLarge, Unauthorized

from tardist import catalog
from tardist.queue import SYNC
from tardist.settings import Settings
from tardist.web import context

bp = Blueprint("hooks", __name__)
MAX_BODY = 1024 * 1024
GITHUB_EVENT_HEADERS = ("X-GitHub-Event", "X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event")


@bp.post("/hooks/push")
def push() -> Response:
    """Queue a sync of the pushed repository: 202 with what was queued, 200 when nothing applies."""
    settings = context.settings()
    if not settings.hook_secret:
        raise NotFound("webhooks are not enabled")
    # werkzeug answers 413 past the limit when Content-Length says so, but silently cuts a chunked
    # body at it: read one byte more than allowed, and a body that reaches it is too large either way.
    request.max_content_length = MAX_BODY + 1
    body = request.get_data(cache=True)
    if len(body) > MAX_BODY:
        raise RequestEntityTooLarge(f"the body is larger than {MAX_BODY} bytes")
    secret = settings.hook_secret.encode()
    flavour = _authenticate(body, secret)
    event = _decode(body)
    conn = context.reader().connection()
    if flavour == "github":
        what, ref = _github(event)
    elif flavour == "gitlab":
        what, ref = _gitlab(event)
    elif "refUpdate" in event:
        what, ref = _gerrit(event)
    else:
        what, ref = _own(event)
    if what is None or (ref is not None and not _builds(settings, ref)):
        return jsonify(queued=[])  # a ping, or a push to a branch tardist does not build: acknowledged, ignored
    found = _match(settings, conn, what)
    context.queue().request(SYNC, *found, reason="hook")
    return jsonify(queued=[{"kind": found[0], "name": found[1]}]), 202


def _builds(settings: Settings, ref: str) -> bool:
    """True when ref is refs/heads/<a branch tardist builds>: not a tag, not refs/heads/x/master."""
    return ref.startswith("refs/heads/") and ref.removeprefix("refs/heads/") in settings.branches


def _authenticate(body: bytes, secret: bytes) -> str:
    """Which flavour sent the request, once its signature or token checks out; 401 otherwise."""
    signature = request.headers.get("X-Hub-Signature-256")
    if signature is not None:
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
            return "github"
        raise Unauthorized("X-Hub-Signature-256 does not match the body signed with hook_secret")
    token = request.headers.get("X-Gitlab-Token")
    if token is not None:
        if hmac.compare_digest(token.encode(), secret):
            return "gitlab"
        raise Unauthorized("X-Gitlab-Token is not hook_secret")
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        if hmac.compare_digest(bearer.strip().encode(), secret):
            return "bearer"
        raise Unauthorized("the bearer token is not hook_secret")
    raise Unauthorized("sign the body (X-Hub-Signature-256), or send X-Gitlab-Token or Authorization: Bearer")


def _decode(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the body is not JSON") from None
    except RecursionError:  # a correctly signed body can still be hostile: [[[[...]]]] 200,000 deep
        raise BadRequest("the body is nested too deeply") from None
    if not isinstance(event, dict):
        raise BadRequest("the body is not a push event (expected a JSON object)")
    return event


def _field(event: dict[str, Any], *path: str) -> Any:
    for key in path:
        event = event.get(key) if isinstance(event, dict) else None
    return event


def _ref(event: dict[str, Any], *path: str) -> str:
    ref = _field(event, *path)
    if not isinstance(ref, str) or not ref:
        raise BadRequest(f"not a push event: no {'.'.join(path)}")
    return ref


def _urls(section: Any, keys: tuple[str, ...]) -> list[str]:
    return [section[key] for key in keys if isinstance(section, dict) and isinstance(section.get(key), str)]


def _github(event: dict[str, Any]) -> tuple[list[str] | None, str | None]:
    name = next((request.headers[h] for h in GITHUB_EVENT_HEADERS if h in request.headers), "push")
    if name == "ping":  # sent once when the webhook is made: answered so the forge shows it working
        return None, None
    if name != "push":
        raise BadRequest(f"not a push event: {name[:50]!r}")
    urls = _urls(event.get("repository"), ("clone_url", "html_url", "git_url", "ssh_url", "url"))
    if not urls:
        raise BadRequest("not a push event: no repository.clone_url")
    return urls, _ref(event, "ref")


def _gitlab(event: dict[str, Any]) -> tuple[list[str], str | None]:
    if event.get("object_kind", "push") not in ("push", "tag_push"):  # tag pushes: acknowledged, ignored
        raise BadRequest(f"not a push event: {str(event.get('object_kind'))[:50]!r}")
    keys = ("git_http_url", "git_ssh_url", "http_url", "ssh_url", "web_url", "url", "homepage")
    urls = _urls(event.get("project"), keys) + _urls(event.get("repository"), keys)
    if not urls:
        raise BadRequest("not a push event: no project.git_http_url")
    return urls, _ref(event, "ref")


def _gerrit(event: dict[str, Any]) -> tuple[tuple[str, str] | str, str | None]:
    if event.get("type", "ref-updated") != "ref-updated":
        raise BadRequest(f"not a push event: {str(event.get('type'))[:50]!r} (expected ref-updated)")
    project = _field(event, "refUpdate", "project")
    if not isinstance(project, str) or not project:
        raise BadRequest("not a push event: no refUpdate.project")
    ref = _ref(event, "refUpdate", "refName")
    if not ref.startswith("refs/"):
        ref = f"refs/heads/{ref}"  # older Gerrit versions send the short branch name
    return project, ref if ref.startswith("refs/heads/") else "refs/other"


def _own(event: dict[str, Any]) -> tuple[tuple[str, str], None]:
    kind, name = event.get("kind"), event.get("name")
    if not isinstance(kind, str) or not isinstance(name, str):
        raise BadRequest('not a push event: expected {"kind": ..., "name": ...} or a Gerrit ref-updated event')
    return (kind, name), None


def _match(settings: Settings, conn, what: list[str] | tuple[str, str] | str) -> tuple[str, str]:
    """(kind, name) of the configured repository the event names; 404 when none."""
    if isinstance(what, list):
        found = catalog.by_url(settings, conn, what)
        described = what[0]
    elif isinstance(what, str):
        found = catalog.by_project(settings, conn, what)
        described = what
    else:
        found = what if catalog.find(settings, conn, *what) else None
        described = "/".join(what)
    if found is None:
        raise NotFound(f"no configured repository matches {described[:200]!r}")
    return found
