"""``phasef retry SESSION --step STAGE.step --as NAME``: run a failed (or cancelled) step of a running session again."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phasef_tui.commands._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    OPERATOR_HELP,
    add_operator_arg,
    add_session_lookup,
    default_operator,
    on_session,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("retry", help="run a failed or cancelled step of a running session again (approvers)")
    p.add_argument("session", nargs="?", default=None, help="session id (default: the newest)")
    p.add_argument("--step", required=True, help="STAGE.step to run again")
    add_operator_arg(p, OPERATOR_HELP)
    p.add_argument("--reason", default="", help="why; recorded in the journal")
    add_session_lookup(p)
    p.set_defaults(func=on_session(_retry))


def _retry(args: argparse.Namespace, session_dir: Path) -> int:
    from pipeline.control import ControlClient
    from pipeline.errors import ControlError

    client = ControlClient(session_dir)
    if not client.available():
        print(
            f"error: no supervisor is running for session {session_dir.name} "
            f"(to run its failed steps again: phasef run --resume {session_dir.name})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        data = client.request("retry", step=args.step, operator=args.operator or default_operator(), reason=args.reason)
    except ControlError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"error: cannot reach the supervisor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"retry requested: {data['retry']} by {data['operator']}")
    return EXIT_OK
