"""The web app: everything that needs Flask (views, webhooks, on-demand builds, pages, errors, the reader).

Only `gunicorn`/`flask run` import this package; the worker never does. Entry point: app.create_app.
"""
