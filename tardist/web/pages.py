"""Pages for people: /browse, /browse/<kind>, /browse/<kind>/<name> (server-rendered HTML, no JavaScript).

Every page is made from the database, cached and ETagged like the API's answers
(`responses.respond`), in the reader's language (`?uselang=`, else Accept-Language).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, render_template, request
from markupsafe import Markup
from werkzeug.exceptions import BadRequest, NotFound

from tardist import answers, queries
from tardist.info import localize, web_url
from tardist.languages import accepted, fallbacks
from tardist.layout import is_plain_name
from tardist.web import context, responses, trust
from tardist.wikitext import to_segments, to_text

bp = Blueprint("pages", __name__)
SORTS = ("name", "downloads")
MAX_QUERY = 200
CHART_DAYS = 90
RECENT_DAYS = queries.RECENT_DAYS
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 640, 180, 36
# Distinct at a glance and against white (each at least 4.5:1), in branch order.
COLOURS = ["#1d4ed8", "#b45309", "#047857", "#7e22ce", "#be123c", "#0f766e", "#4d7c0f", "#9a3412"]


def install(app: Flask) -> str:
    """Set up app's templates and return the pages' Content-Security-Policy.

    Templates lose the blank lines their tags leave, and the stylesheet is inlined once, minified.
    """
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    css = (Path(__file__).parent / "templates" / "style.css").read_text(encoding="utf-8")
    style = " ".join(css.split()).replace("; ", ";").replace(" { ", "{").replace(" }", "}").replace(": ", ":")
    style += "".join(f".swatch.c{index}{{background:{colour}}}" for index, colour in enumerate(COLOURS))
    app.jinja_env.globals["inline_style"] = Markup(style)
    app.jinja_env.filters["web_url"] = web_url
    # The one stylesheet is allowed by its hash: no inline script or style attribute runs on a page.
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")


def language_chain() -> tuple[list[str], str]:
    """The reader's languages, best first (from ?uselang=, else Accept-Language), and the cache key part."""
    lang = responses.parse_uselang(request.args)
    if lang is not None:
        return fallbacks(lang), f"uselang={lang}"
    chain = accepted(request.headers.get("Accept-Language", ""))
    return chain, "accept=" + ",".join(chain)


def page(key: str, compute) -> Response:
    """An HTML page through the API's cache, ETag and 304 handling."""
    return responses.respond(key, compute, mimetype="text/html", vary="Accept-Language")


@bp.get("/browse")
def browse_all() -> Response:
    """Every kind, searchable and sortable."""
    return listing(None)


@bp.get("/browse/<kind>")
def browse_kind(kind: str) -> Response:
    """One kind, searchable and sortable."""
    return listing(kind)


def listing(kind: str | None) -> Response:
    """The list page of one kind or of all."""
    query = request.args.get("q", "").strip()
    if len(query) > MAX_QUERY:
        raise BadRequest(f"q: at most {MAX_QUERY} characters")
    sort = request.args.get("sort", "name")
    if sort not in SORTS:
        raise BadRequest(f"sort: expected one of {', '.join(SORTS)}, got {sort[:100]!r}")
    chain, lang_key = language_chain()
    day = queries.utc_today()

    def compute(conn):
        if kind is not None:
            answers.check_kind(conn, context.configured_kinds(), kind)
        kinds = [kind] if kind is not None else context.configured_kinds()
        rows = queries.listing(conn, kind, queries.first_day(day)) if conn else []
        for name in sorted({row["kind"] for row in rows} - set(kinds)):
            kinds.append(name)
        found = {k: queries.translations(conn, k, chain) for k in kinds} if conn and chain else {}
        for row in rows:
            lang_text = found.get(row["kind"], {}).get(row["name"])
            if lang_text:
                row["description_lang"], row["description"] = lang_text
        shown = [row for row in rows if matches(row, query)]
        if sort == "downloads":
            shown.sort(key=lambda row: (-row["downloads"], row["name"].lower()))
        groups = [(k, [row for row in shown if row["kind"] == k]) for k in kinds]
        return render_template("browse.html", kind=kind, groups=groups, query=query, sort=sort,
                               total=len(shown), uselang=request.args.get("uselang", "").lower(),
                               recent_days=RECENT_DAYS, signers=trust.signers(conn)).encode()
    key = f"/browse/{kind or ''}?q={query}&sort={sort}&{lang_key}&day={day}"
    return page(key, compute)


def matches(row: dict[str, Any], query: str) -> bool:
    """True when every word of the query is in the repository's name or description."""
    text = f"{row['name']} {to_text(row['description']) or ''}".lower()  # what the reader sees
    return all(word in text for word in query.lower().split())


@bp.get("/browse/<kind>/<name>")
def browse_repo(kind: str, name: str) -> Response:
    """One repository: what it is, its branches and tarballs, its downloads."""
    chain, lang_key = language_chain()
    day = queries.utc_today()

    def compute(conn):
        stored = answers.info_one(conn, context.configured_kinds(), kind, name)
        found = queries.translations(conn, kind, chain, [name]).get(name) if chain else None
        info = json.loads(localize(stored.decode(), found))
        days = queries.downloads_by_day(conn, kind, name, queries.first_day(day, CHART_DAYS))
        chart = downloads_chart(days, list(info["branches"]), day)
        verify = {branch: trust.verify_commands(conn, context.settings().site_url, kind, b["tarball"], b["url"])
                  for branch, b in info["branches"].items()}
        return render_template("repo.html", info=info, chart=chart, uselang=request.args.get("uselang", "").lower(),
                               clone_command=clone_command(info["repository"]), verify=verify).encode()
    if not is_plain_name(name):
        raise NotFound(f"no {kind[:100]} named {name[:100]!r}")
    return page(f"/browse/{kind}/{name}?{lang_key}&day={day}", compute)


def clone_command(url: str | None) -> str | None:
    """`git clone <url>` for the page, or None when no public URL may be shown."""
    return f"git clone {url}" if url else None


def downloads_chart(days: dict[str, dict[str, int]], branches: list[str], end: date) -> dict[str, Any]:
    """What the template needs to draw daily downloads per branch as SVG, and to say it in words."""
    dates = [(end - timedelta(days=CHART_DAYS - 1 - offset)).isoformat() for offset in range(CHART_DAYS)]
    names = [b for b in branches if b in days] + sorted(set(days) - set(branches))
    peak = max([count for counts in days.values() for count in counts.values()] or [0])
    top = max(peak, 1)
    inner_w, inner_h = CHART_WIDTH - 2 * CHART_PAD, CHART_HEIGHT - 2 * CHART_PAD
    series = []
    for index, branch in enumerate(names):
        counts = [days[branch].get(d, 0) for d in dates]
        points = " ".join(f"{CHART_PAD + inner_w * i / (CHART_DAYS - 1):.1f},"
                          f"{CHART_PAD + inner_h * (1 - c / top):.1f}" for i, c in enumerate(counts))
        series.append({"branch": branch, "colour": COLOURS[index % len(COLOURS)], "swatch": index % len(COLOURS),
                       "points": points,
                       "total": sum(counts), "last_7": sum(counts[-7:]), "last_30": sum(counts[-30:]),
                       "best_day": max(zip(counts, dates))[1] if any(counts) else None})
    return {"series": series, "width": CHART_WIDTH, "height": CHART_HEIGHT, "pad": CHART_PAD, "peak": peak,
            "first": dates[0], "last": dates[-1], "days": CHART_DAYS, "total": sum(s["total"] for s in series)}


@bp.app_template_filter("description_segments")
def description_segments(description: str) -> list[tuple[str, bool]]:
    """A description's wikitext as (text, is_code) pieces, for the templates to escape and show."""
    return to_segments(description)


@bp.app_template_filter("size")
def human_size(size: int | None) -> str:
    """12345678 -> '11.8 MiB'."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


@bp.app_template_filter("when")
def readable_time(stamp: str | None) -> str:
    """2026-01-02T10:00:00Z -> '2026-01-02 10:00 UTC'."""
    return f"{stamp[:10]} {stamp[11:16]} UTC" if stamp and len(stamp) >= 16 else (stamp or "")
