"""Times as tardist stores and serves them: ISO 8601 UTC strings to the second, which sort as text."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(moment: datetime) -> str:
    """A moment as the ISO 8601 UTC string tardist stores and serves, e.g. 2026-11-20T10:00:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> str:
    """The current time as utc_iso."""
    return utc_iso(datetime.now(UTC))
