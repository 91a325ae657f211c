"""The one JSON error shape: {"error": {"status": 404, "message": "..."}}."""

from __future__ import annotations

import logging

from flask import Flask, Response
from werkzeug.exceptions import HTTPException, InternalServerError

from tardist.answers import Missing, encode

log = logging.getLogger("tardist.api")


def error_body(status: int, message: str) -> dict:
    """The body of every error answer."""
    return {"error": {"status": status, "message": message}}


def error_response(status: int, message: str, headers: dict | None = None) -> Response:
    """An error answer, never cached."""
    response = Response(encode(error_body(status, message)), status=status, mimetype="application/json",
                        headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


# Every answer: JSON and pages alike. Pages get their own policy (tardist.web.pages), allowing their stylesheet.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def register_security_headers(app: Flask, page_policy: str) -> None:
    """Send SECURITY_HEADERS with every answer, errors included; HTML answers get page_policy."""

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = page_policy
        return response


def register_error_handlers(app: Flask) -> None:
    """Turn every HTTPException, and any unexpected exception, into the JSON error shape."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")}
        return error_response(exc.code or 500, exc.description or exc.name, headers)

    @app.errorhandler(Missing)
    def missing(exc: Missing) -> Response:
        return error_response(404, str(exc))

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        if app.debug:
            raise exc  # `flask run --debug`: let the developer see Werkzeug's debugger
        log.exception("unhandled error")
        return error_response(500, InternalServerError.description)
