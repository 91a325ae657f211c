"""/dist/<kind>/<file>: tarballs served by Flask when no nginx is in front (local and debug runs)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, send_from_directory
from werkzeug.exceptions import NotFound

from tardist.settings import is_kind

bp = Blueprint("dist", __name__)


@bp.get("/dist/<kind>/<file>")
def tarball(kind: str, file: str) -> Response:
    """One tarball file; tarball names never change content, so it caches forever."""
    if not is_kind(kind) or not file.endswith(".tar.gz") or file.startswith("."):
        raise NotFound(f"no tarball {kind}/{file}")
    folder = current_app.extensions["tardist.settings"].tarballs / kind
    response = send_from_directory(folder, file, mimetype="application/gzip", max_age=365 * 24 * 3600)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response
