"""Helpers for the SSH tests and benchmarks/bench_ssh_sessions.py: operator keys, the real OpenSSH client, an
in-process server, a real run served by ``phasef serve --ssh`` (``Served``) and clients in PTYs of their own that
time their first frame (``open_clients``); tmux: tests/tmux_helpers.

The in-process server runs the same ``SSHService`` as ``phasef serve`` on its own event loop in a thread, with a
small terminal program in place of the TUI where a test needs to see exactly what a session receives (environment,
size, keystrokes) or to make one session crash.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal as signals
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncssh

from phasef_tui.ssh.connection_log import ConnectionLog
from phasef_tui.ssh.host_key import load_or_create_host_key
from phasef_tui.ssh.hub import ServeSettings, SessionHub
from phasef_tui.ssh.pty_child import PtyChild
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
    text = path.read_text()
    # a reader racing the server may see a record half written (a write that crosses a page is not seen at once):
    # only lines that end in a newline are complete
    complete = text[: text.rfind("\n") + 1]
    events = [json.loads(line) for line in complete.splitlines() if line.strip()]
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
        **{
            "preload": False,
            "command": lambda operator, folder: [sys.executable, str(program), str(folder), operator.name],
            **overrides,
        },
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
    # SIGHUP at its default action, as in a terminal, whatever this process was started with (``nohup make test``)
    proc = subprocess.Popen(
        [*_with_signals(["SIGHUP"], "SIG_DFL"), *argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
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


# -- a real run served over SSH, and clients in PTYs of their own (tests/test_ssh_*.py and benchmarks) -----------------

ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[PX^_][^\x1b]*\x1b\\|\x1b.")


def memory_kb(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in kB: Pss (shared pages split between the processes that map them), Rss,
    Shared_Clean, Shared_Dirty, Private_Clean, Private_Dirty, Anonymous."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        if rest.split():
            values[name] = int(rest.split()[0])
    return values


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


class Served:
    """A supervisor waiting at the one-gate plan's gate, and ``phasef serve --ssh`` on that session (restartable, so
    one run can be served one way then another). Keys: ``alice`` (approver) and ``victor`` (viewer)."""

    def __init__(
        self,
        folder: Path,
        *serve_args: str,
        max_sessions: int | None = None,
        serve: bool = True,
        ignoring: Sequence[str] = (),
    ) -> None:
        from tests.spine_helpers import ONE_GATE_PLAN, has_event, spawn, wait_for, write_plan

        self.folder = folder
        self.ignoring = tuple(ignoring)
        """Signals the server starts with ignored (``("SIGHUP", "SIGINT", "SIGQUIT")``: as ``nohup phasef serve &``
        leaves them), which every process it starts inherits unless it resets them."""
        write_plan(folder, ONE_GATE_PLAN)
        self.session = folder / "sessions" / "demo"
        self.supervisor = spawn("run", "--headless", "--session", "demo", cwd=folder)
        wait_for(lambda: has_event(self.session, "gate_opened", "B.release"), 60, "the gate to open")
        self.alice, alice_pub = make_key(folder, "alice")
        self.victor, victor_pub = make_key(folder, "victor")
        self.keys = write_keys(
            folder / "authorized_keys", [f'environment="PHASEF_ROLE=approver" {alice_pub}', victor_pub]
        )
        self.log = folder / "ssh.jsonl"
        self.max_sessions = max_sessions
        self.server: subprocess.Popen[str] | None = None
        self.banner: list[str] = []
        self.port = 0
        if serve:
            self.start_server(*serve_args)

    def start_server(self, *serve_args: str) -> None:
        """Start ``phasef serve --ssh`` (the one ``server``/``port``/``banner``/``log`` refer to)."""
        self.server, self.port, self.banner = self.launch_server(*serve_args, log=self.log)

    def launch_server(self, *serve_args: str, log: Path) -> tuple[subprocess.Popen[str], int, list[str]]:
        """Another ``phasef serve --ssh`` on the same session (its process, port and banner), logging to ``log``."""
        n = str(self.max_sessions)
        limits = ["--max-sessions", n, "--max-startups", n, "--per-source-max-startups", n] if self.max_sessions else []
        server = subprocess.Popen(
            [
                # the others at their default action, whatever this process was started with (``nohup make test``)
                *_with_signals([n for n in ("SIGHUP", "SIGINT", "SIGQUIT") if n not in self.ignoring], "SIG_DFL"),
                *_with_signals(self.ignoring, "SIG_IGN"),
                sys.executable,
                "-m",
                "phasef_tui.cli",
                "serve",
                "--ssh",
                "127.0.0.1:0",
                "--authorized-keys",
                str(self.keys),
                "--host-key",
                str(self.folder / "host_key"),
                "--session",
                "demo",
                "--log",
                str(log),
                *limits,
                *serve_args,
            ],
            cwd=self.folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert server.stdout is not None
        banner = []
        for line in server.stdout:
            banner.append(line.rstrip())
            if line.startswith("listening on "):
                break
        if not (banner and banner[-1].startswith("listening on 127.0.0.1:")):
            os.killpg(server.pid, signals.SIGKILL)
            raise AssertionError(f"phasef serve did not start: {banner}")
        return server, int(banner[-1].rsplit(":", 1)[1]), banner

    def ssh(self, *extra: str, key: Path | None = None) -> list[str]:
        return ssh_argv(self.port, key or self.victor, *extra, user="operator")

    def stop_server(self) -> int:
        """SIGTERM, as an operator stops it; its exit status."""
        assert self.server is not None
        self.server.send_signal(signals.SIGTERM)
        code = self.server.wait(60)
        if self.server.stdout is not None:
            self.server.stdout.close()
        return code

    def status(self) -> dict[str, Any]:
        from tests.spine_helpers import phasef

        return dict(json.loads(phasef("status", "demo", "--json", cwd=self.folder).stdout))

    def close(self) -> None:
        for proc in (self.server, self.supervisor):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signals.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signals.SIGKILL)
                    proc.wait(10)


class PtyClient:
    """One program (``ssh -tt``, or the TUI itself) in a PTY of its own; notes when its screen shows ``marker``."""

    def __init__(self, argv: list[str], env: dict[str, str], size: tuple[int, int], cwd: Path, marker: str) -> None:
        self.argv, self.env, self.size, self.cwd = argv, env, size, cwd
        self.marker = marker.encode()
        self.buffer = b""
        self.started = 0.0
        self.wall_started = 0.0
        self.first_frame: float | None = None
        self.seen = asyncio.Event()
        self.child: PtyChild | None = None

    def _output(self, data: bytes) -> None:
        if self.first_frame is not None:
            return
        self.buffer = (self.buffer + data)[-200_000:]
        if self.marker in ANSI.sub(b"", self.buffer):
            self.first_frame = time.perf_counter() - self.started
            self.seen.set()

    async def start(self) -> None:
        self.child = PtyChild(self._output)
        self.started = time.perf_counter()
        self.wall_started = time.time()
        await self.child.start(self.argv, self.env, self.cwd, (*self.size, 0, 0))

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop(5.0)


async def open_clients(
    argvs: list[list[str]], env: dict[str, str], size: tuple[int, int], timeout: float, cwd: Path, marker: str
) -> list[PtyClient]:
    """Start every client at once; return when each has shown ``marker`` (or raise, naming how many did not)."""
    clients = [PtyClient(argv, env, size, cwd, marker) for argv in argvs]
    await asyncio.gather(*(c.start() for c in clients))
    try:
        await asyncio.wait_for(asyncio.gather(*(c.seen.wait() for c in clients)), timeout)
    except TimeoutError:
        missing = [c for c in clients if c.first_frame is None]
        tail = ANSI.sub(b"", missing[0].buffer)[-400:].decode(errors="replace")
        await asyncio.gather(*(c.stop() for c in clients))
        raise AssertionError(
            f"{len(missing)} of {len(clients)} clients showed no first frame in {timeout} s; one ends: {tail!r}"
        ) from None
    return clients


def _with_signals(names: Sequence[str], action: str) -> list[str]:
    """A prefix for a command line: a small exec wrapper that sets the signals ``names`` to ``action`` (``SIG_IGN``,
    ``SIG_DFL``), then runs the rest."""
    if not names:
        return []
    code = (
        "import os, signal, sys\n"
        f"for name in {tuple(names)!r}:\n    signal.signal(getattr(signal, name), signal.{action})\n"
        "os.execvp(sys.argv[1], sys.argv[1:])\n"
    )
    return [sys.executable, "-c", code]
