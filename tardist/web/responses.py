"""What the views share: cached, ETagged answers, content negotiation, and the check of ?uselang=.

Kinds and stored answers are checked and read by `tardist.answers` (with `context.configured_kinds()`)."""

from __future__ import annotations

from flask import Response, request
from werkzeug.exceptions import BadRequest

from tardist.languages import is_language
from tardist.web import context
from tardist.web.reader import Answer


def respond(key: str, compute, max_age: int | None = None, mimetype: str = "application/json",
            vary: str | None = None) -> Response:
    """A cached, ETagged answer (JSON unless said otherwise); 304 when the client already has it."""
    answer: Answer = context.reader().answer(key, compute)
    max_age = context.settings().cache_seconds if max_age is None else max_age
    headers = {"ETag": f'"{answer.etag}"',
               "Cache-Control": f"public, max-age={max_age}" if max_age else "no-cache"}
    if vary:
        headers["Vary"] = vary
    # Weak comparison, as RFC 9110 says for If-None-Match: nginx weakens the ETag when it gzips.
    if request.if_none_match.contains_weak(answer.etag):
        return Response(status=304, headers=headers)
    return Response(answer.body, mimetype=mimetype, headers=headers)


def prefers_html() -> bool:
    """True when the client (a browser) ranks text/html above JSON in its Accept header."""
    accept = request.accept_mimetypes
    return accept["text/html"] > accept["application/json"]


def parse_uselang(args) -> str | None:
    """The ?uselang= language code, lower-cased and checked; None when absent."""
    if "uselang" not in args:
        return None
    if len(args.getlist("uselang")) > 1:
        raise BadRequest("uselang: give it once")
    code = args["uselang"].lower()
    if not is_language(code):
        raise BadRequest(f"uselang: {code[:100]!r} is not a language code such as 'de' or 'de-at'")
    return code
