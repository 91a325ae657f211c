"""/stats/<kind> and /stats/<kind>/<name>: download counts, as `tardist stats ingest` recorded them."""

from __future__ import annotations

from flask import Blueprint, Response
from werkzeug.exceptions import NotFound

from tardist import answers, queries
from tardist.layout import is_plain_name
from tardist.web import context, responses

bp = Blueprint("stats", __name__)


@bp.get("/stats/<kind>")
def kind_totals(kind: str) -> Response:
    """Downloads per repository of a kind: the last 30 days and all time."""
    today = queries.utc_today()
    since = queries.first_day(today)

    def compute(conn):
        answers.check_kind(conn, context.configured_kinds(), kind)
        if conn is None:
            return {kind: {}}
        totals = queries.download_totals(conn, kind, since)
        return {kind: {name: dict(zip(("last_30_days", "all_time"), totals.get(name, (0, 0))))
                       for name in queries.present_names(conn).get(kind, [])}}
    return responses.respond(f"/stats/{kind}@{today}", compute)


@bp.get("/stats/<kind>/<name>")
def repo_days(kind: str, name: str) -> Response:
    """Downloads of one repository per branch per day, with totals."""
    today = queries.utc_today()
    since = queries.first_day(today)

    def compute(conn):
        answers.check_kind(conn, context.configured_kinds(), kind)
        if conn is None or not is_plain_name(name) or name not in queries.present_names(conn).get(kind, []):
            raise NotFound(f"no {kind} named {name[:100]!r}")
        branches = {}
        for branch, days in queries.downloads_by_day(conn, kind, name).items():
            branches[branch] = {"last_30_days": sum(c for d, c in days.items() if d >= since),
                                "all_time": sum(days.values()), "days": days}
        return {"name": name, "kind": kind,
                "last_30_days": sum(b["last_30_days"] for b in branches.values()),
                "all_time": sum(b["all_time"] for b in branches.values()), "branches": branches}
    return responses.respond(f"/stats/{kind}/{name}@{today}", compute)
