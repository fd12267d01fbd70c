"""UTC wall-clock times as the journal writes them (ISO 8601 with milliseconds and ``Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def unix_seconds(text: str | None) -> float | None:
    """A journal time as seconds since the epoch; None when absent or not an ISO 8601 time."""
    if not text:
        return None
    try:
        return parse_iso(text).timestamp()
    except ValueError:
        return None
