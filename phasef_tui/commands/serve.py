"""``phasef serve --ssh [HOST:]PORT --authorized-keys FILE``: operators attach the TUI with a plain ``ssh``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from phasef_tui.commands._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_session_lookup, resolve_session

DEFAULT_HOST = "127.0.0.1"
LIMITS = (  # the numeric flags: flag, the ``ServeSettings`` field it sets, whether 0 is refused too
    ("--max-sessions", "max_sessions", True),
    ("--login-timeout", "login_timeout", True),
    ("--preauth-timeout", "preauth_timeout", True),
    ("--idle-timeout", "idle_timeout", False),
    ("--keepalive", "keepalive_interval", False),
    ("--per-source-max-startups", "per_source_startups", False),
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the TUI over SSH: each operator gets their own TUI on the same run (see docs/ssh.md)",
        description="Serve the TUI over SSH. Operators connect with 'ssh -t -p PORT HOST'; their name and role "
        "(viewer or approver) come from their line in the authorized_keys file. The run itself is not affected "
        "by the server starting or stopping.",
    )
    p.add_argument(
        "--ssh", required=True, metavar="[HOST:]PORT", help=f"address to listen on (host default {DEFAULT_HOST})"
    )
    p.add_argument(
        "--authorized-keys", required=True, metavar="FILE", help="OpenSSH authorized_keys, re-read at each login"
    )
    p.add_argument(
        "--host-key",
        metavar="FILE",
        default=None,
        help="ed25519 host key, created on first start (default: $XDG_CONFIG_HOME/phasef/ssh_host_ed25519_key)",
    )
    p.add_argument("--session", default=None, help="attach operators to this session (default: the newest one)")
    p.add_argument("--max-sessions", type=int, default=8, metavar="N", help="concurrent operator sessions (8)")
    p.add_argument(
        "--max-startups",
        default="10:30:100",
        metavar="START:RATE:FULL",
        help="connections logging in at once: from START on, drop a new one with RATE%% chance rising to 100%% at "
        "FULL (as sshd's MaxStartups); a single N is a hard cap (10:30:100)",
    )
    p.add_argument(
        "--per-source-max-startups",
        type=int,
        default=4,
        metavar="N",
        help="connections logging in at once from one address; more from it are dropped (4; 0: no limit)",
    )
    p.add_argument(
        "--preauth-timeout",
        type=float,
        default=10,
        metavar="S",
        help="time for a client to send its version and finish the key exchange (10)",
    )
    p.add_argument(
        "--idle-timeout", type=float, default=3600, metavar="S", help="end a session after S s without input (3600)"
    )
    p.add_argument("--login-timeout", type=float, default=30, metavar="S", help="time allowed to log in (30)")
    p.add_argument(
        "--keepalive", type=float, default=30, metavar="S", help="keepalive interval; 3 unanswered end it (30)"
    )
    p.add_argument(
        "--no-prefork",
        action="store_true",
        help="start each session's TUI as a new interpreter instead of forking it from the session server that "
        "has imported the TUI once (slower to open and ~2x the memory per session; for comparison)",
    )
    p.add_argument(
        "--log", default=None, metavar="FILE", help="connection log, JSON lines (SESSIONS/ssh-connections.jsonl)"
    )
    add_session_lookup(p)
    p.set_defaults(func=_serve)


def parse_listen(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); ``ValueError`` with a readable message."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = DEFAULT_HOST, text
    host = host.strip("[]") or DEFAULT_HOST
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--ssh {text!r}: expected [HOST:]PORT with PORT in 0-65535")
    return host, int(port_text)


def _serve(args: argparse.Namespace) -> int:
    from phasef_tui.commands._common import sessions_root_for
    from phasef_tui.ssh.admission import MaxStartups, StartupsError
    from phasef_tui.ssh.host_key import HostKeyError, default_host_key_path, load_or_create_host_key
    from phasef_tui.ssh.hub import ServeSettings

    try:
        host, port = parse_listen(args.ssh)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        max_startups = MaxStartups.parse(args.max_startups)
    except StartupsError as exc:
        print(f"error: --max-startups {exc}", file=sys.stderr)
        return EXIT_USAGE
    limits: dict[str, Any] = {}
    for flag, setting, positive in LIMITS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value < 0 or (positive and value == 0):
            print(f"error: {flag} must be {'positive' if positive else '0 or more'}, got {value}", file=sys.stderr)
            return EXIT_USAGE
        limits[setting] = value
    keys_path = Path(args.authorized_keys).expanduser().resolve()
    if not keys_path.is_file():
        print(f"error: --authorized-keys {keys_path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    root = sessions_root_for(args)
    session_dir = None
    if args.session:
        session_dir = resolve_session(args, args.session)
        if session_dir is None:
            return EXIT_USAGE
    host_key_path = Path(args.host_key).expanduser().resolve() if args.host_key else default_host_key_path()
    try:
        host_key = load_or_create_host_key(host_key_path)
    except (HostKeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    settings = ServeSettings(
        authorized_keys=keys_path,
        host_key=host_key_path,
        sessions_root=root,
        session_dir=session_dir,
        host=host,
        port=port,
        max_startups=max_startups,
        log_path=Path(args.log).expanduser().resolve() if args.log else root / "ssh-connections.jsonl",
        cwd=Path.cwd(),
        prefork=not args.no_prefork,
        **limits,
    )
    return run_server(settings, host_key)


def run_server(settings: Any, host_key: Any) -> int:
    """Serve until SIGINT/SIGTERM/SIGHUP, then detach every TUI and exit 0."""
    import asyncio
    import signal

    from phasef_tui.ssh.authorized_keys import read_authorized_keys
    from phasef_tui.ssh.connection_log import ConnectionLog
    from phasef_tui.ssh.hub import SessionHub
    from phasef_tui.ssh.server import SSHService

    async def main() -> int:
        log = ConnectionLog(settings.log_path)
        service = SSHService(SessionHub(settings, log), host_key)
        try:
            await service.start()
        except OSError as exc:
            print(f"error: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=sys.stderr)
            log.close()
            return EXIT_FAILED
        new = "generated new host key" if host_key.created else "host key"
        print(f"{new} {host_key.fingerprint} (ed25519) in {host_key.path}")
        keys = read_authorized_keys(settings.authorized_keys)
        print(f"authorized keys: {settings.authorized_keys}: {keys.summary()}")
        for issue in keys.issues:
            print(f"warning: {issue}")
        fork_server = service.hub.fork_server
        if fork_server is not None:
            print(
                f"session server pid {fork_server.pid}: TUI imported in {fork_server.preload_s:.2f} s; "
                "each session is a process forked from it"
            )
        else:
            print(
                "sessions start as new processes"
                + ("" if not settings.prefork else " (the session server did not start)")
            )
        target = settings.session_dir.name if settings.session_dir else "the newest session at each login"
        print(f"attaching operators to {target}; connection log {settings.log_path}")
        print(f"listening on {settings.host}:{service.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            print("shutting down: detaching every operator session (the run goes on)", flush=True)
            await service.close()
            log.close()
        return EXIT_OK

    return asyncio.run(main())
