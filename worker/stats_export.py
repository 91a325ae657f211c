"""`tardist stats export`: one day of anonymised tarball requests as gzip'd JSON lines, for anyone to analyse."""

from __future__ import annotations

import gzip
import json
import sqlite3
from datetime import date
from pathlib import Path

from tardist.layout import TARBALL_PATH_RE, atomic_write, stats_export_file
from tardist.settings import Settings
from worker.stats import DOWNLOAD_RE


def exported_path(settings: Settings, path: str) -> bool:
    """True when a logged path names a tarball in tardist's own pattern (or its /download/ redirect).

    Anyone can request any path: the others are not published, so nobody writes text into the data set.
    """
    base = settings.tarball_url
    if base.startswith("/") and path.startswith(base + "/") and TARBALL_PATH_RE.fullmatch(path, len(base)):
        return True
    return not base.startswith("/") and DOWNLOAD_RE.fullmatch(path) is not None


def export_day(settings: Settings, db: sqlite3.Connection, day: date, out: Path) -> tuple[Path, int, int]:
    """Write a day's anonymised tarball requests as gzip'd JSON lines into out, atomically; (file, rows, left out)."""
    target = stats_export_file(out, day.isoformat())
    written = left_out = 0
    with atomic_write(target, mode=0o644) as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as zipped:
            for time_, path, status, size, client, agent in db.execute(
                    "SELECT time, path, status, bytes, client, agent FROM requests WHERE day = ? "
                    "ORDER BY time, rowid", [day.isoformat()]):
                if not exported_path(settings, path):
                    left_out += 1
                    continue
                zipped.write(json.dumps({"time": time_, "path": path, "status": status, "bytes": size,
                                         "client": client, "agent": agent}, separators=(",", ":")).encode()
                             + b"\n")
                written += 1
    return target, written, left_out
