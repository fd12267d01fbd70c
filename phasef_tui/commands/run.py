"""``phasef run``: run (or resume) the plan; ``phasef`` alone starts a supervisor and attaches the TUI."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from phasef_tui.commands._common import (
    EXIT_FAILED,
    EXIT_USAGE,
    add_config_arg,
    add_json_arg,
    add_operator_arg,
    default_operator,
    load,
    on_session,
    resolve_session,
)

if TYPE_CHECKING:
    from pipeline.config import PhasefConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the plan: --headless in the foreground (exit 0 GO, 4 GO-OVERRIDE, 3 NO-GO, 1 failed/cancelled, "
        "2 usage), "
        "--detach as a background supervisor, else a supervisor plus the TUI",
    )
    add_config_arg(p)
    p.add_argument("--headless", action="store_true", help="run in the foreground with rich progress, no TUI")
    p.add_argument("--detach", action="store_true", help="start a background supervisor and print the session id")
    p.add_argument("--session", default=None, help="session name (new, or an existing one to continue)")
    p.add_argument("--resume", metavar="SESSION", default=None, help="resume a session after a crash or kill")
    p.add_argument("--until", metavar="STAGE", default=None, help="stop after this stage (and what it needs)")
    p.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    add_json_arg(p, "the started session (with --detach)")
    p.set_defaults(func=_run)

    a = sub.add_parser("attach", help="attach the TUI to a running or finished session (newest by default)")
    a.add_argument("session", nargs="?", default=None)
    add_operator_arg(a)
    add_config_arg(a)
    a.add_argument("--sessions", default=None)
    a.set_defaults(func=on_session(_attach))


def _session_dir(args: argparse.Namespace, cfg: PhasefConfig, project_dir: Path) -> Path | None:
    from pipeline.session import new_session_id, sessions_root

    root = sessions_root(cfg, project_dir)
    if args.resume:
        found = resolve_session(args, args.resume)
        return found
    return (root / (args.session or new_session_id())).resolve()


def _run(args: argparse.Namespace) -> int:
    loaded = load(args)
    if loaded is None:
        return EXIT_USAGE
    cfg, path = loaded
    if args.json and not args.detach:
        print("error: --json prints the started session, so it needs --detach", file=sys.stderr)
        return EXIT_USAGE
    if args.until and args.until not in cfg.stages:
        print(f"error: --until names unknown stage {args.until!r}; stages: {', '.join(cfg.stages)}", file=sys.stderr)
        return EXIT_USAGE
    project_dir = path.parent
    session_dir = _session_dir(args, cfg, project_dir)
    if session_dir is None:
        return EXIT_USAGE
    if args.headless:
        from phasef_tui.headless import run_headless

        return run_headless(cfg, path, session_dir, args.until, plain=args.plain)
    proc = start_detached(path, session_dir, args.until)
    if proc is None:
        return EXIT_FAILED
    if args.detach:
        if args.json:
            import json

            print(json.dumps({"session": session_dir.name, "session_dir": str(session_dir), "pid": proc.pid}))
        else:
            print(session_dir.name)
        return 0
    return attach(session_dir, default_operator())


def start_detached(config: Path, session_dir: Path, until: str | None) -> subprocess.Popen[bytes] | None:
    """Start ``phasef run --headless --plain`` as a background supervisor that outlives this terminal."""
    from pipeline.session import wait_for_socket

    session_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "phasef_tui.cli", "run", "--headless", "--plain", "--config", str(config)]
    argv += ["--session", str(session_dir.name)]
    if until:
        argv += ["--until", until]
    log = open(session_dir / "supervisor.log", "ab")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=str(config.parent),
        env={**os.environ, "PHASEF_SESSIONS_ROOT": str(session_dir.parent)},
    )
    log.close()
    if not wait_for_socket(session_dir, timeout=30, pid=proc.pid):
        print(f"error: the supervisor did not start; see {session_dir / 'supervisor.log'}", file=sys.stderr)
        return None
    return proc


def attach(session_dir: Path, operator: str) -> int:
    from phasef_tui.app import run_attach
    from pipeline.session_paths import socket_path

    sock = socket_path(session_dir)
    return int(run_attach(session_dir, operator, sock if sock.exists() else None))


def _attach(args: argparse.Namespace, session_dir: Path) -> int:
    return attach(session_dir, args.operator or default_operator())
