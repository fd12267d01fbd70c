"""``phasef approve SESSION GATE --decision go|no-go --as NAME --reason TEXT [--override]`` and ``phasef cancel``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from phasef_tui.commands._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    OPERATOR_HELP,
    add_json_arg,
    add_operator_arg,
    add_session_lookup,
    default_operator,
    resolve_session,
)

if TYPE_CHECKING:
    from pipeline.state import SessionState


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("approve", help="sign a waiting gate (go or no-go) of a running session")
    p.add_argument("session", help="session id (or 'latest')")
    p.add_argument("gate", help="gate id, STAGE.step (or just the step name when unique)")
    p.add_argument("--decision", required=True, choices=["go", "no-go"])
    add_operator_arg(p, OPERATOR_HELP)
    p.add_argument("--reason", required=True, help="why; recorded in the journal with the evidence hash")
    p.add_argument("--evidence-sha256", default=None, help="refuse unless the gate still holds this evidence hash")
    p.add_argument(
        "--override",
        action="store_true",
        help="sign GO at the final gate although a pass criterion is not met (the run then ends GO-OVERRIDE, "
        "exit 4; refused when the project sets [project] final_override = false)",
    )
    add_json_arg(p, "the signed decision")
    add_session_lookup(p)
    p.set_defaults(func=_approve)

    c = sub.add_parser("cancel", help="cancel a running session, or one step of it")
    c.add_argument("session", nargs="?", default=None)
    c.add_argument("--step", default=None, help="STAGE.step to cancel (default: the whole run)")
    add_operator_arg(c)
    add_json_arg(c, "what was cancelled")
    add_session_lookup(c)
    c.set_defaults(func=_cancel)


def _client(args: argparse.Namespace, session: str | None):  # type: ignore[no-untyped-def]
    from pipeline.control import ControlClient

    session_dir = resolve_session(args, None if session in (None, "latest") else session)
    if session_dir is None:
        return None
    client = ControlClient(session_dir)
    if not client.available():
        print(f"error: no supervisor is running for session {session_dir.name}", file=sys.stderr)
        return None
    return client


def _gate_id(client, gate: str) -> str:  # type: ignore[no-untyped-def]
    if "." in gate:
        return gate
    status = client.request("status")
    matches = [g["id"] for g in status["gates"] if g["id"].split(".", 1)[1] == gate]
    return matches[0] if len(matches) == 1 else gate


def _approve(args: argparse.Namespace) -> int:
    from pipeline.control import ControlClient
    from pipeline.errors import ControlError

    session_dir = resolve_session(args, None if args.session in (None, "latest") else args.session)
    if session_dir is None:
        return EXIT_USAGE
    client = ControlClient(session_dir)
    if not client.available():
        return _approve_without_supervisor(session_dir, args.gate)
    try:
        gate = _gate_id(client, args.gate)
        data = client.request(
            "approve",
            gate=gate,
            decision=args.decision,
            operator=args.operator or default_operator(),
            reason=args.reason,
            evidence_sha256=args.evidence_sha256,
            override=args.override or None,
        )
    except ControlError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ConnectionRefusedError, FileNotFoundError):
        # a socket left behind by a supervisor that is gone: nothing was sent, the journal says the rest
        return _approve_without_supervisor(session_dir, args.gate)
    except OSError as exc:
        print(f"error: cannot reach the supervisor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(data, default=str))
        return EXIT_OK
    note = ""
    if data.get("override"):
        note = (
            " as an OVERRIDE of unmet pass criteria: the run ends GO-OVERRIDE"
            if data.get("final")
            else (" as an OVERRIDE of the audit verdict")
        )
    print(f"{data['gate']}: {data['decision'].upper()} signed by {data['operator']}{note}")
    return EXIT_OK


def _approve_without_supervisor(session_dir: Path, name: str) -> int:
    """No supervisor answers: read the journal and say what became of the gate; nothing is signed (exit 1)."""
    from pipeline.journal import is_locked
    from pipeline.state import load_state

    session = session_dir.name
    try:
        state = load_state(session_dir)
    except (FileNotFoundError, OSError) as exc:
        print(f"error: no supervisor is running for session {session}, and its journal cannot be read: {exc}",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    matches = [g for g in state.gates.values() if g.id == name or ("." not in name and g.step == name)]
    if len(matches) != 1:
        opened = ", ".join(state.gates) or "none"
        which = "several gates are" if matches else "no gate is"
        print(
            f"refused: {which} named {name!r} in session {session} (gates opened: {opened}); "
            f"no supervisor is running for it ({_run_state(state)})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    gate = matches[0]
    if gate.state == "decided":
        reason = f", reason {gate.reason!r}" if gate.reason else ""
        override = " (an override)" if gate.override else ""
        print(
            f"refused: gate {gate.id} is not waiting: decided by {gate.operator} ({gate.decision}) at "
            f"{gate.decided_at}{reason}{override}; session {session} is {_run_state(state)}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if gate.state == "timed_out":
        print(
            f"refused: gate {gate.id} is not waiting: timed out at {gate.decided_at} (no-go: {gate.reason}); "
            f"session {session} is {_run_state(state)}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if state.state in ("completed", "failed", "cancelled"):
        print(
            f"refused: gate {gate.id} was never decided and cannot be any more: session {session} ended "
            f"({state.state}) at {state.finished}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if is_locked(session_dir):
        print(
            f"error: gate {gate.id} is waiting and a supervisor holds session {session}, but its control socket "
            "is not up (starting or stopping?); try again in a moment",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(
        f"error: gate {gate.id} is waiting, but no supervisor is running for session {session} "
        f"({_run_state(state)}), so nothing was signed. Resume the run with `phasef run --resume {session} "
        "--detach`; the same gate waits again, and this approval can then be repeated.",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _run_state(state: SessionState) -> str:
    if state.state == "interrupted":
        return "interrupted: its supervisor stopped without finishing the run"
    if state.finished:
        return f"{state.state} since {state.finished}"
    return str(state.state)


def _cancel(args: argparse.Namespace) -> int:
    from pipeline.errors import ControlError

    client = _client(args, args.session)
    if client is None:
        return EXIT_USAGE
    try:
        data = client.request("cancel", step=args.step, operator=args.operator or default_operator())
    except (ControlError, OSError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(data, default=str))
        return EXIT_OK
    print(f"cancel requested: {data['cancelled']}")
    return EXIT_OK
