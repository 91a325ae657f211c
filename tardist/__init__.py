"""tardist: mirrors plugin repositories, builds tarballs, answers /list and /info."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tardist.settings import load_settings

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> "Flask":
    """The Flask app: defaults -> TOML config -> TARDIST_* environment -> test_config.

    Lower-case keys of test_config are tardist settings, upper-case ones Flask's.
    """
    # Imported here: the worker shares this package (settings, store) but never needs Flask,
    # and cron starts it once an hour for what is often a one-second no-op.
    from flask import Flask

    from tardist import api, dist, downloads, gerrit, hooks, openapi, pages
    from tardist.errors import register_error_handlers, register_security_headers
    from tardist.queue import Queue
    from tardist.reader import Reader

    test_config = test_config or {}
    settings = load_settings(overrides={k: v for k, v in test_config.items() if k.islower()})
    app = Flask(__name__, static_folder=None)  # no /static/ route: the pages inline their CSS, allowed by its hash
    app.config.update({k: v for k, v in test_config.items() if k.isupper()})
    # Answers are encoded by tardist.answers.encode; this is for anything that uses Flask's own.
    app.json.sort_keys = False
    app.json.compact = True
    app.extensions["tardist.settings"] = settings
    app.extensions["tardist.reader"] = Reader(settings.database)
    app.extensions["tardist.queue"] = Queue(settings.queue_file)  # opened on first use, one connection per thread
    app.extensions["tardist.build_waiters"] = dist.Waiters(settings.build_waiters)
    register_error_handlers(app)
    register_security_headers(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(gerrit.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(downloads.bp)
    app.register_blueprint(dist.bp)  # serves files only with serve_tarballs or behind nginx; builds misses
    return app
