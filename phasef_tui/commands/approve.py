"""``phasef approve SESSION GATE --decision go|no-go --as NAME --reason TEXT`` and ``phasef cancel``."""

from __future__ import annotations

import argparse
import json
import sys

from phasef_tui.commands._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_json_arg,
    add_session_lookup,
    default_operator,
    resolve_session,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("approve", help="sign a waiting gate (go or no-go) of a running session")
    p.add_argument("session", help="session id (or 'latest')")
    p.add_argument("gate", help="gate id, STAGE.step (or just the step name when unique)")
    p.add_argument("--decision", required=True, choices=["go", "no-go"])
    p.add_argument("--as", dest="operator", default=None, help="operator name (default: $PHASEF_OPERATOR or $USER)")
    p.add_argument("--reason", required=True, help="why; recorded in the journal with the evidence hash")
    p.add_argument("--evidence-sha256", default=None, help="refuse unless the gate still holds this evidence hash")
    add_json_arg(p, "the signed decision")
    add_session_lookup(p)
    p.set_defaults(func=_approve)

    c = sub.add_parser("cancel", help="cancel a running session, or one step of it")
    c.add_argument("session", nargs="?", default=None)
    c.add_argument("--step", default=None, help="STAGE.step to cancel (default: the whole run)")
    c.add_argument("--as", dest="operator", default=None)
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
    from pipeline.engine import ControlError

    client = _client(args, args.session)
    if client is None:
        return EXIT_USAGE
    try:
        gate = _gate_id(client, args.gate)
        data = client.request(
            "approve",
            gate=gate,
            decision=args.decision,
            operator=args.operator or default_operator(),
            reason=args.reason,
            evidence_sha256=args.evidence_sha256,
        )
    except ControlError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"error: cannot reach the supervisor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(data, default=str))
        return EXIT_OK
    note = " (operator override of the audit verdict)" if data.get("override") else ""
    print(f"{data['gate']}: {data['decision'].upper()} signed by {data['operator']}{note}")
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    from pipeline.engine import ControlError

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
