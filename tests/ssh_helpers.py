"""Helpers for the SSH tests: operator keys, the real OpenSSH client, an in-process server (tmux: tests/tmux_helpers).

The in-process server runs the same ``SSHService`` as ``phasef serve`` on its own event loop in a thread, with a
small terminal program in place of the TUI where a test needs to see exactly what a session receives (environment,
size, keystrokes) or to make one session crash.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncssh

from phasef_tui.ssh.connection_log import ConnectionLog
from phasef_tui.ssh.host_key import load_or_create_host_key
from phasef_tui.ssh.hub import ServeSettings, SessionHub
from phasef_tui.ssh.server import SSHService

# A terminal program standing in for the TUI: raw mode like a TUI, reports what it was given and every resize.
STANDIN = r"""
import os, signal, sys, tty

def out(text):
    os.write(1, (text + "\r\n").encode())

def size(*_):
    cols, rows = os.get_terminal_size(0)
    out(f"SIZE {cols}x{rows}")

names = ("PHASEF_OPERATOR", "PHASEF_ROLE", "PHASEF_KEY_FINGERPRINT", "TERM", "COLORTERM", "LINES", "COLUMNS",
         "OPENAI_API_KEY")
signal.signal(signal.SIGWINCH, size)
tty.setraw(0)
out("READY " + " ".join(f"{n}={os.environ.get(n, '-')}" for n in names) + " ARGS=" + ",".join(sys.argv[1:]))
size()
while True:
    data = os.read(0, 1024)
    if not data or data == b"q":
        sys.exit(0)
    if data == b"x":
        os.abort()
    if data == b"f":
        chunk = b"flood " * 2000 + b"\r\n"
        while True:
            os.write(1, chunk)
    out(f"GOT {data!r}")
"""


def make_key(folder: Path, name: str) -> tuple[Path, str]:
    """An ed25519 key pair for an operator: (private key path, public line without options)."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment=name)
    path = folder / f"id_{name.replace(' ', '_')}"
    path.write_bytes(key.export_private_key("openssh"))
    path.chmod(0o600)
    public = key.export_public_key("openssh").decode().strip()
    Path(f"{path}.pub").write_text(public + "\n")
    return path, public


def write_keys(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    path.chmod(0o600)
    return path


def fingerprint(private_key: Path) -> str:
    """The fingerprint as OpenSSH computes it (``ssh-keygen -lf``)."""
    out = subprocess.run(["ssh-keygen", "-lf", f"{private_key}.pub"], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


def ssh_argv(port: int, key: Path, *extra: str, user: str = "operator") -> list[str]:
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-p",
        str(port),
        "-i",
        str(key),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        *extra,
        f"{user}@127.0.0.1",
    ]


def run_ssh(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


class ServerThread:
    """``SSHService`` on its own event loop in a background thread, as ``phasef serve`` runs it."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.service: SSHService | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            host_key = load_or_create_host_key(self.settings.host_key)
            hub = SessionHub(self.settings, ConnectionLog(self.settings.log_path, stream=io.StringIO()))
            self.service = SSHService(hub, host_key)
            self.loop.run_until_complete(self.service.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(20)
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        assert self.service is not None
        return self.service.port

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop and return its result (awaiting it if it is a coroutine)."""

        async def wrapper() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(30)

    def shutdown(self) -> None:
        if self.service is not None and not self.service.hub.closing:
            self.call(self.service.close)
            self.call(lambda: self.service and self.service.hub.log.close())

    def __exit__(self, *exc: object) -> None:
        try:
            self.shutdown()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if not self.loop.is_running():
                self.loop.close()


def log_events(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if kind is None or e["event"] == kind]


@contextmanager
def standin_server(tmp_path: Path, key_lines: list[str], **overrides: Any) -> Iterator[ServerThread]:
    """An in-process server whose sessions run the stand-in terminal program."""
    program = tmp_path / "standin.py"
    program.write_text(STANDIN)
    session_dir = tmp_path / "sessions" / "demo"
    session_dir.mkdir(parents=True, exist_ok=True)
    keys = write_keys(tmp_path / "authorized_keys", key_lines)
    settings = ServeSettings(
        authorized_keys=keys,
        host_key=tmp_path / "host_key",
        sessions_root=tmp_path / "sessions",
        session_dir=session_dir,
        port=0,
        log_path=tmp_path / "ssh.jsonl",
        command=lambda operator, folder: [sys.executable, str(program), str(folder), operator.name],
        **{"preload": False, **overrides},
    )
    with ServerThread(settings) as server:
        yield server


def capture_raw(
    argv: list[str], env: dict[str, str], until: bytes, size: tuple[int, int] = (100, 30), timeout: float = 30
) -> bytes:
    """Run ``argv`` in a PTY of its own and return its raw output (escape sequences and all) up to ``until``."""
    import fcntl
    import pty
    import select
    import signal as signals
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = b""
    end = time.monotonic() + timeout
    try:
        while until not in _plain(out) and time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        os.killpg(proc.pid, signals.SIGHUP)
        proc.wait(10)
        os.close(master)
    return out


def _plain(data: bytes) -> bytes:
    import re

    return re.sub(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b.", b"", data)
