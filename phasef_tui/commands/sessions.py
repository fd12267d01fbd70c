"""``phasef sessions [--json] [--tui]``: every session under ``sessions_dir`` at a glance, from its journal."""

from __future__ import annotations

import argparse
import json

from phasef_tui.commands._common import EXIT_OK, add_operator_arg, add_session_lookup, sessions_root_for


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sessions", help="list every session: state, decision, models, duration, key metrics")
    p.add_argument("--json", action="store_true", help="print the phasef.sessions/1 JSON object")
    p.add_argument("--tui", action="store_true", help="the Sessions screen: sort, open one, compare two")
    add_operator_arg(p, "operator name for a session opened from the TUI")
    add_session_lookup(p)
    p.set_defaults(func=_sessions)


def _sessions(args: argparse.Namespace) -> int:
    from pipeline.report.sessions import sessions_doc
    from widgets.session_rows import HEADERS, cells

    root = sessions_root_for(args)
    if args.tui:
        from phasef_tui.commands._common import config_path, default_operator
        from phasef_tui.sessions_app import run_sessions_tui

        return run_sessions_tui(root, operator=args.operator or default_operator(), config=config_path(args))
    doc = sessions_doc(root)
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    rows = [cells(r) for r in doc["sessions"]]
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
