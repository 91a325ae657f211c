"""Reads shared by the web app and `tardist status`, on a read-only connection."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from typing import Any

RECENT_DAYS = 30  # "recent" downloads: /stats' last_30_days, ?sort=downloads, the pages


def utc_today() -> date:
    """Today in UTC: the day download windows end."""
    return datetime.now(UTC).date()


def first_day(today: date, days: int = RECENT_DAYS) -> str:
    """The first day (YYYY-MM-DD) of the `days` days that end with today."""
    return (today - timedelta(days=days - 1)).isoformat()


def status(conn: sqlite3.Connection) -> dict[str, Any]:
    """Last runs, counts and what is in error: `tardist status` and GET /status."""
    def rows(sql: str) -> list[dict]:
        cursor = conn.execute(sql)
        columns = [c[0] for c in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]

    runs = rows("SELECT id, started_at, finished_at, status, built, unchanged, failed, seconds, "
                "options, warnings FROM runs ORDER BY id DESC LIMIT 10")
    for run in runs:
        run["options"] = json.loads(run["options"] or "{}")
        run["warnings"] = json.loads(run["warnings"] or "[]")
    counts = {
        "repositories": dict(conn.execute(
            "SELECT kind, count(*) FROM repos WHERE present = 1 GROUP BY kind ORDER BY kind").fetchall()),
        "branches": conn.execute("SELECT count(*) FROM branches WHERE tarball IS NOT NULL").fetchone()[0],
        "tarballs": conn.execute("SELECT count(*) FROM tarballs WHERE superseded_at IS NULL").fetchone()[0],
        "superseded_tarballs": conn.execute(
            "SELECT count(*) FROM tarballs WHERE superseded_at IS NOT NULL").fetchone()[0],
    }
    return {
        "runs": runs,
        "counts": counts,
        "repository_errors": rows("SELECT kind, name, error, checked_at, retry_at FROM repos "
                                  "WHERE present = 1 AND error IS NOT NULL ORDER BY kind, name"),
        "branch_errors": rows("SELECT b.kind, b.name, b.branch, b.error, b.error_commit AS 'commit', b.retry_at "
                              "FROM branches b JOIN repos r USING (kind, name) "
                              "WHERE r.present = 1 AND b.error IS NOT NULL ORDER BY b.kind, b.name, b.branch"),
    }



def present_names(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Names of the repositories sources list now, by kind, sorted."""
    names: dict[str, list[str]] = {}
    for kind, name in conn.execute("SELECT kind, name FROM repos WHERE present = 1 ORDER BY kind, name"):
        names.setdefault(kind, []).append(name)
    return names


def has_kind(conn: sqlite3.Connection, kind: str) -> bool:
    """True when sources list some repository of kind."""
    return conn.execute("SELECT 1 FROM repos WHERE kind = ? AND present = 1 LIMIT 1", [kind]).fetchone() is not None


def info_json(conn: sqlite3.Connection, kind: str, names: list[str] | None = None) -> list[tuple[str, str]]:
    """(name, rendered /info JSON) of a kind's repositories, or of some names of it, sorted by name."""
    where, params = "kind = ? AND present = 1", [kind]
    if names is not None:
        where += f" AND name IN ({', '.join('?' * len(names))})"
        params += names
    return conn.execute(f"SELECT name, info FROM repos WHERE {where} ORDER BY name", params).fetchall()


def translations(conn: sqlite3.Connection, kind: str, chain: list[str],
                 names: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """name -> (lang, description) in the first language of chain each repository's facts branch has."""
    if not chain:
        return {}
    where, params = f"d.kind = ? AND d.lang IN ({', '.join('?' * len(chain))})", [kind, *chain]
    if names is not None:
        where += f" AND d.name IN ({', '.join('?' * len(names))})"
        params += names
    rank = {lang: position for position, lang in enumerate(chain)}
    best: dict[str, tuple[str, str]] = {}
    for name, lang, text in conn.execute(
            "SELECT d.name, d.lang, d.description FROM descriptions d JOIN repos r "
            "ON r.kind = d.kind AND r.name = d.name AND r.facts_branch = d.branch "
            f"WHERE {where} AND r.present = 1", params):
        if name not in best or rank[lang] < rank[best[name][0]]:
            best[name] = (lang, text)
    return best


def listing(conn: sqlite3.Connection, kind: str | None, since: str) -> list[dict[str, Any]]:
    """Every present repository (of kind, or all) with its description, license and downloads since a day."""
    where, params = "r.present = 1 AND r.info IS NOT NULL", [since]
    if kind is not None:
        where += " AND r.kind = ?"
        params.append(kind)
    rows = conn.execute(
        "SELECT r.kind, r.name, json_extract(r.info, '$.description'), json_extract(r.info, '$.license'), "
        "coalesce(d.recent, 0) FROM repos r LEFT JOIN (SELECT kind, name, sum(count) AS recent FROM downloads "
        "WHERE day >= ? GROUP BY kind, name) d ON d.kind = r.kind AND d.name = r.name "
        f"WHERE {where} ORDER BY r.kind, r.name", params).fetchall()
    return [{"kind": kind_, "name": name, "description": description, "description_lang": "en" if description else None,
             "license": license_, "downloads": recent} for kind_, name, description, license_, recent in rows]


def download_totals(conn: sqlite3.Connection, kind: str, since: str) -> dict[str, tuple[int, int]]:
    """name -> (downloads since the day, downloads of all time) for every counted repository of kind."""
    return {name: (recent, total) for name, recent, total in conn.execute(
        "SELECT name, sum(CASE WHEN day >= ? THEN count ELSE 0 END), sum(count) FROM downloads "
        "WHERE kind = ? GROUP BY name", [since, kind])}


def downloads_by_day(conn: sqlite3.Connection, kind: str, name: str, since: str = "") -> dict[str, dict[str, int]]:
    """branch -> {day: downloads} of one repository, from a day on (all when since is empty)."""
    days: dict[str, dict[str, int]] = {}
    for branch, day, count in conn.execute(
            "SELECT branch, day, count FROM downloads WHERE kind = ? AND name = ? AND day >= ? ORDER BY branch, day",
            [kind, name, since]):
        days.setdefault(branch, {})[day] = count
    return days
