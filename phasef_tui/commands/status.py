"""``phasef status [SESSION] [--json]``: from the running supervisor, else by replaying the journal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from phasef_tui.commands._common import EXIT_FAILED, EXIT_OK, add_session_lookup, on_session


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="show a session's steps and gates (newest session by default)")
    p.add_argument("session", nargs="?", default=None)
    p.add_argument("--json", action="store_true", help="print the phasef.status/1 JSON object")
    add_session_lookup(p)
    p.set_defaults(func=on_session(_status))


def fetch_status(session_dir: Any) -> dict[str, Any]:
    from pipeline.control import ControlClient
    from pipeline.state import load_state

    client = ControlClient(session_dir, timeout=5)
    if client.available():
        try:
            data = client.request("status")
            data["source"] = "supervisor"
            return data
        except OSError:
            pass  # stale socket: the supervisor is gone
    data = load_state(session_dir).public()
    data["source"] = "journal"
    return data


def _status(args: argparse.Namespace, session_dir: Path) -> int:
    try:
        data = fetch_status(session_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"session {data['session']}: {data['state']} (from the {data['source']})")
    if data.get("final_decision"):
        print(f"final decision: {data['final_decision']}")
    for c in data.get("pass_criteria", []):
        print(f"  criterion {'met    ' if c['met'] else 'NOT MET'} {c['label']}: {c['evidence']}")
    for s in data["steps"]:
        dur = f"{s['duration_s']:.1f}s" if s.get("duration_s") is not None else ""
        err = f"  {s['error']}" if s.get("error") else ""
        print(f"  {s['stage']}.{s['step']:<32} {s['state']:<10} attempts={s['attempts']} {dur}{err}")
    for g in data["gates"]:
        who = f" by {g['operator']}" if g.get("operator") else ""
        over = " (OVERRIDE)" if g.get("override") else ""
        print(f"  gate {g['id']}: {g['state']} {g.get('decision') or ''}{who}{over}")
    for p in data.get("problems", []):
        print(f"  journal problem: {p}")
    return EXIT_OK
