"""The backoff policy: what failed at a commit is not tried again at every run.

A branch that failed to build at a head waits before that head is built again; a fetch
that failed for some heads waits before those heads are fetched again. Each further
failure at the same commit doubles the wait, up to LAST_RETRY. `tardist.store` records
the failures; `worker.sync` asks here whether to try again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tardist.timestamps import utc_iso

FIRST_RETRY = 5 * 60  # seconds; doubled at every further failure at the same commit...
LAST_RETRY = 6 * 3600  # ...up to this


def retry_delay(failures: int) -> int:
    """Seconds to wait before trying again what failed `failures` times in a row at the same commit."""
    return min(FIRST_RETRY * 2 ** min(max(failures - 1, 0), 20), LAST_RETRY)


def retry_time(failures: int) -> str:
    """When to try again, as utc_iso, what failed `failures` times in a row."""
    return utc_iso(datetime.now(UTC) + timedelta(seconds=retry_delay(failures)))


def retry_heads_key(heads: dict[str, str]) -> str:
    """How the heads a failed fetch wanted are recorded (and compared)."""
    return json.dumps(heads, sort_keys=True)


def branch_waits(row: dict | None, head: str, now: str) -> bool:
    """True when the branch failed at this very head and its retry time has not come yet."""
    return bool(row and row["error"] and row["error_commit"] == head and (row.get("retry_at") or "") > now)


def fetch_waits(repo_row: dict | None, wanted: dict[str, str], now: str) -> bool:
    """True when fetching these very heads failed before and its retry time has not come yet."""
    return bool(repo_row and repo_row["error"] and (repo_row.get("retry_at") or "") > now
                and repo_row.get("retry_heads") == retry_heads_key(wanted))
