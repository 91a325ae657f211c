"""Baseline for bench/api_speed.py: Flask answering /info/<kind>/<name> with one constant JSON body.

The body is TRIVIAL_BODY_BYTES long (the size of a real /info answer), with the
same kind of ETag and Cache-Control headers, so the only difference from
tardist is tardist's own work per request.
"""

from __future__ import annotations

import hashlib
import json
import os

from flask import Flask, Response


def create_app(size: int) -> Flask:
    """A Flask app whose /info/<kind>/<name> always answers the same body of `size` bytes."""
    padding = "x" * max(size - len(json.dumps({"padding": ""})), 0)
    body = json.dumps({"padding": padding}).encode()
    headers = {"ETag": f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"',
               "Cache-Control": "public, max-age=300"}
    app = Flask(__name__)

    @app.get("/info/<kind>/<name>")
    def info(kind: str, name: str) -> Response:
        return Response(body, mimetype="application/json", headers=headers)

    return app


app = create_app(int(os.environ.get("TRIVIAL_BODY_BYTES", "1000")))
