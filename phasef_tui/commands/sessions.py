"""``phasef sessions [--json]``: every session under ``sessions_dir`` at a glance, from its journal."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from phasef_tui.commands._common import EXIT_OK, add_session_lookup, sessions_root_for


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sessions", help="list every session: state, decision, models, duration, key metrics")
    p.add_argument("--json", action="store_true", help="print the phasef.sessions/1 JSON object")
    add_session_lookup(p)
    p.set_defaults(func=_sessions)


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


def fmt_metric(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if percent else f"{value:.3g}"


def table_row(row: dict[str, Any]) -> list[str]:
    """The shown cells of a session row (shared by the command and the Sessions screen)."""
    m = row["metrics"]
    return [
        row["id"],
        row["state"] or "unreadable",
        row["final_decision"] or "-",
        ", ".join(row["models"]) or "-",
        fmt_started(row["started"]),
        fmt_duration(row["duration_s"]),
        fmt_metric(m["schema_violation_rate"], percent=True),
        fmt_metric(m["mttr_s"]) + ("s" if m["mttr_s"] is not None else ""),
        fmt_metric(m["solved_share"], percent=True),
    ]


HEADERS = ["session", "state", "decision", "models", "started", "duration", "schema viol.", "MTTR", "solved"]


def _sessions(args: argparse.Namespace) -> int:
    from pipeline.report.sessions import sessions_doc

    root = sessions_root_for(args)
    doc = sessions_doc(root)
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    rows = [table_row(r) for r in doc["sessions"]]
    if not rows:
        print(f"no sessions under {root}")
        return EXIT_OK
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    print("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for r in doc["sessions"]:
        if r["error"]:
            print(f"error: {r['error']}")
    return EXIT_OK
