"""What every SSH session shares: the settings and limits, the live sessions, the log, and what to run per session.

The program a session runs is a parameter (``SessionCommand``): by default ``phasef attach SESSION --as NAME``, the
ordinary TUI client (run as ``python -m phasef_tui.ssh.attach SESSION NAME``: the same attach, with no parser). Its
environment is built here from an allow-list, so the server's own secrets (API keys in its environment) never reach
a process an operator drives, and a client cannot set its own role: ``PHASEF_ROLE`` and friends come from the
authorized_keys entry only; the client contributes only ``TERM`` (from its PTY request) and ``COLORTERM``/
``NO_COLOR`` (if it sends them, e.g. ``ssh -o SetEnv=COLORTERM=truecolor``).

``LINES``/``COLUMNS`` are deliberately not set: Python's ``shutil.get_terminal_size`` prefers them over the PTY's
real size, so a TUI started with them would never follow a resize. The PTY carries the size, as a local terminal's
does.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from phasef_tui.ssh.admission import MaxStartups
from phasef_tui.ssh.authorized_keys import NAME_VAR, ROLE_VAR, Operator
from phasef_tui.ssh.connection_log import ConnectionLog

if TYPE_CHECKING:
    from phasef_tui.ssh.prefork import ForkServer
    from phasef_tui.ssh.session import OperatorSession

FINGERPRINT_VAR = "PHASEF_KEY_FINGERPRINT"
IDENTITY_VARS = frozenset({NAME_VAR, ROLE_VAR, FINGERPRINT_VAR})
KEPT_SERVER_VARS = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH"}
)
KEPT_SERVER_PREFIXES = ("LC_", "XDG_", "PHASEF_")
CLIENT_VARS = ("COLORTERM", "NO_COLOR")
TERM_PATTERN = re.compile(r"[A-Za-z0-9._+-]{1,64}")
CLIENT_VALUE_PATTERN = re.compile(r"[A-Za-z0-9._+-]{0,32}")
DEFAULT_TERM = "xterm-256color"

SessionCommand = Callable[[Operator, Path], Sequence[str]]


def attach_command(operator: Operator, session_dir: Path) -> list[str]:
    """The ordinary TUI client, attached to the session as this operator: ``phasef attach SESSION --as NAME``
    without the command line's parsing (``phasef_tui.ssh.attach``)."""
    return [sys.executable, "-m", "phasef_tui.ssh.attach", str(session_dir), operator.name]


def allowed_server_environment(server_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's variables a session may see (no secrets, no identity): also all the session server gets."""
    base = os.environ if server_env is None else server_env
    return {
        k: v
        for k, v in base.items()
        if (k in KEPT_SERVER_VARS or k.startswith(KEPT_SERVER_PREFIXES)) and k not in IDENTITY_VARS
    }


def session_environment(
    operator: Operator, term: str, client_env: Mapping[str, str], server_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = allowed_server_environment(server_env)
    env["TERM"] = term if TERM_PATTERN.fullmatch(term) else DEFAULT_TERM
    for name in CLIENT_VARS:
        value = client_env.get(name)
        if value is not None and CLIENT_VALUE_PATTERN.fullmatch(value):
            env[name] = value
    env[NAME_VAR] = operator.name
    env[ROLE_VAR] = operator.role
    env[FINGERPRINT_VAR] = operator.fingerprint
    return env


NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def ignored_client_variables(client_env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The variables a client sent that its session does not get: (printable name, why). Values are not shown."""
    ignored = []
    for name, value in client_env.items():
        shown = name if NAME_PATTERN.fullmatch(name) else ascii(name[:64])
        if name not in CLIENT_VARS:
            ignored.append((shown, f"only {' and '.join(CLIENT_VARS)} are taken from the client"))
        elif not CLIENT_VALUE_PATTERN.fullmatch(value):
            ignored.append((shown, "value not accepted"))
    return ignored


@dataclass(frozen=True)
class ServeSettings:
    """Limits default to what one supervised run needs; ``phasef serve --help`` lists the flags that change them."""

    authorized_keys: Path
    host_key: Path
    sessions_root: Path
    session_dir: Path | None = None  # a fixed session; None: the newest one at each login
    host: str = "127.0.0.1"
    port: int = 2222
    max_sessions: int = 8
    # connections still logging in: random early drop from start, none admitted at full
    max_startups: MaxStartups = field(default_factory=MaxStartups)
    per_source_startups: int = 4  # connections logging in from one address; 0: no per-source limit
    preauth_timeout: float = 10.0  # to send the version and finish the key exchange
    login_timeout: float = 30.0
    idle_timeout: float = 3600.0  # no keystroke or resize for this long ends the session; 0 turns it off
    stall_timeout: float = 60.0  # a client that takes no output for this long is cut off
    keepalive_interval: float = 30.0
    keepalive_count_max: int = 3
    output_high_water: int = 256 * 1024
    shutdown_grace: float = 3.0
    log_path: Path | None = None
    command: SessionCommand = attach_command
    cwd: Path | None = None
    prefork: bool = True  # fork sessions from the pre-started session server; False: a new interpreter each
    preload: bool = True  # the session server imports the TUI ahead (False: it only forks; for other programs)


@dataclass
class SessionHub:
    settings: ServeSettings
    log: ConnectionLog
    sessions: set[OperatorSession] = field(default_factory=set)
    closing: bool = False
    fork_server: ForkServer | None = None  # the pre-forked session server, when settings.prefork and it started

    def admit(self, session: OperatorSession) -> str | None:
        """Register a new TUI session, or say why not."""
        if self.closing:
            return "phasef: the server is shutting down"
        limit = self.settings.max_sessions
        if len(self.sessions) >= limit:
            return f"phasef: {limit} operator sessions are open, the most this server allows; try again later"
        self.sessions.add(session)
        return None

    def release(self, session: OperatorSession) -> None:
        self.sessions.discard(session)

    def session_dir(self) -> tuple[Path | None, str]:
        """The session to attach to, or None and why (the newest session when none was fixed)."""
        fixed = self.settings.session_dir
        if fixed is not None:
            return (fixed, "") if fixed.is_dir() else (None, f"phasef: session folder {fixed} is gone")
        from pipeline.session_paths import find_session

        try:
            return find_session(self.settings.sessions_root, None).resolve(), ""
        except FileNotFoundError as exc:
            return None, f"phasef: nothing to attach to: {exc}"
