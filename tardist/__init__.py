"""tardist: mirrors plugin repositories, builds tarballs, answers /list and /info.

`tardist/` is the data layer both processes share; `tardist/web/` is the Flask app; `worker/` is the
`tardist` command. See docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The Flask app (tardist.web.app.create_app), for `flask --app tardist` and wsgi.py."""
    # Imported here: the worker shares this package (settings, store) but never needs Flask,
    # and cron starts it once an hour for what is often a one-second no-op.
    from tardist.web.app import create_app as web_app

    return web_app(test_config)
