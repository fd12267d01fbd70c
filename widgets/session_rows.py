"""The sessions table as text: columns, cells and sort order of ``phasef sessions`` rows (no Textual: the command
line prints the same cells the Sessions screen shows)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple


class Column(NamedTuple):
    title: str
    key: Callable[[dict[str, Any]], Any]
    """The value the column sorts by (None sorts last)."""


def _metric(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: (row.get("metrics") or {}).get(name)


COLUMNS: tuple[Column, ...] = (
    Column("session", lambda r: r["id"]),
    Column("state", lambda r: r.get("state")),
    Column("decision", lambda r: r.get("final_decision")),
    Column("started", lambda r: r.get("started")),
    Column("duration", lambda r: r.get("duration_s")),
    Column("schema viol.", _metric("schema_violation_rate")),
    Column("MTTR", _metric("mttr_s")),
    Column("solved", _metric("solved_share")),
    Column("models", lambda r: ", ".join(r.get("models") or []) or None),
)
HEADERS = [c.title for c in COLUMNS]
DEFAULT_SORT = 3
"""Newest start first."""


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def fmt_started(ts: str | None) -> str:
    if not ts:
        return "-"
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return ts


def fmt_metric(value: float | None, percent: bool = False, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if percent else f"{value:.3g}{unit}"


def cells(row: dict[str, Any]) -> list[str]:
    """The shown cells of a session row, in ``COLUMNS`` order."""
    m = row.get("metrics") or {}
    return [
        row["id"],
        row.get("state") or "unreadable",
        row.get("final_decision") or "-",
        fmt_started(row.get("started")),
        fmt_duration(row.get("duration_s")),
        fmt_metric(m.get("schema_violation_rate"), percent=True),
        fmt_metric(m.get("mttr_s"), unit="s"),
        fmt_metric(m.get("solved_share"), percent=True),
        ", ".join(row.get("models") or []) or "-",
    ]


def sort_rows(rows: Sequence[dict[str, Any]], column: int, descending: bool) -> list[dict[str, Any]]:
    """Rows ordered by a column's value; rows without a value stay last either way (ties: by id)."""
    key = COLUMNS[column].key
    have = [r for r in rows if key(r) is not None]
    missing = sorted((r for r in rows if key(r) is None), key=lambda r: r["id"])
    have.sort(key=lambda r: r["id"])
    have.sort(key=key, reverse=descending)
    return have + missing
