"""``phasef replay [SESSION]``: the TUI on a session as it was, from its first event (nothing is re-run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phasef_tui.commands._common import (
    EXIT_OK,
    EXIT_USAGE,
    add_operator_arg,
    add_session_lookup,
    default_operator,
    on_session,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay",
        help="open the TUI on a session at its first event: step, jump to failures/gates/deaths, play",
        description="Keys (every screen): , . previous/next event; < > previous/next landmark; m landmark kind "
        "(failure, gate, stage, death); z play/pause; Z speed 1x/10x/100x; J jump to a time; F back to live (follow).",
    )
    p.add_argument("session", nargs="?", default=None, help="session id or folder (default: the newest)")
    p.add_argument("--live", action="store_true", help="start at the newest event, following a running session")
    add_operator_arg(p, "operator name (for decisions once back to live)")
    add_session_lookup(p)
    p.set_defaults(func=on_session(_replay))


def _replay(args: argparse.Namespace, session_dir: Path) -> int:
    from phasef_tui.app import PhasefApp, load_keys
    from phasef_tui.replay_source import ReplaySource
    from phasef_tui.session_source import session_config_path

    try:
        source = ReplaySource(session_dir, operator=args.operator or default_operator(), follow=args.live)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    keymap, problems = load_keys(session_config_path(session_dir))
    PhasefApp(source, keymap=keymap, keymap_problems=problems).run()
    return EXIT_OK
