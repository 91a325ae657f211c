"""create_app: the Flask app, its settings and every endpoint."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tardist.settings import load_settings
from tardist.web import api, context, dist, gerrit, hooks, openapi, pages, stats
from tardist.web.errors import register_error_handlers, register_security_headers


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The Flask app: defaults -> TOML config -> TARDIST_* environment -> test_config.

    Lower-case keys of test_config are tardist settings, upper-case ones Flask's.
    """
    test_config = test_config or {}
    settings = load_settings(overrides={k: v for k, v in test_config.items() if k.islower()})
    app = Flask("tardist.web", static_folder=None)  # no /static/ route: pages inline their CSS, allowed by its hash
    app.config.update({k: v for k, v in test_config.items() if k.isupper()})
    # Answers are encoded by tardist.answers.encode; this is for anything that uses Flask's own.
    app.json.sort_keys = False
    app.json.compact = True
    context.install(app, context.Context.of(settings))
    register_error_handlers(app)
    register_security_headers(app, page_policy=pages.install(app))
    for blueprint in (api.bp, gerrit.bp, openapi.bp, hooks.bp, pages.bp, stats.bp, dist.bp):
        app.register_blueprint(blueprint)
    return app
