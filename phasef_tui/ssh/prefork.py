"""The SSH server's side of the pre-forked session server (zygote.py): start it, ask it for a session process, learn
when that process ends.

The zygote is a fresh interpreter started with the server's allow-listed environment (never a fork of the server:
the host key and the other sessions' state stay out of it). It talks to the server over an inherited socket pair
only. A session's process is asked for with the PTY's slave side attached; the answer is a ``ForkedProcess`` that
behaves, for ``PtyChild``, like the process ``asyncio.create_subprocess_exec`` returns (``pid``, ``returncode``,
``wait()``).

If the zygote dies, the sessions it forked go on (they are processes of their own); their end is then learnt from a
pidfd opened when they were forked (exit status unknown: reported as 1), and the next session starts a new zygote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 120.0
FORK_TIMEOUT_S = 30.0
EXIT_UNKNOWN = 1


class ForkServerError(OSError):
    """The session server could not start, or could not fork a session."""


class ForkedProcess:
    """A session process forked by the zygote: its pid, and its exit status when the zygote reports it."""

    def __init__(self, pid: int, report: socket.socket) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._loop = asyncio.get_running_loop()
        self._report: socket.socket | None = report
        self._done: asyncio.Future[int] = self._loop.create_future()
        self._pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(report.fileno(), self._readable)

    def _readable(self) -> None:
        assert self._report is not None
        try:
            data = self._report.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            with contextlib.suppress(ValueError, TypeError):
                message = json.loads(data)
                if isinstance(message, dict) and isinstance(message.get("exit"), int):
                    self._finish(message["exit"])
            return
        self._close_report()
        # the zygote is gone before the process: the process goes on; its end is seen on the pidfd
        if self._pidfd is not None:
            self._loop.add_reader(self._pidfd, self._pidfd_readable)
        else:
            self._finish(EXIT_UNKNOWN)

    def _pidfd_readable(self) -> None:
        self._finish(EXIT_UNKNOWN)

    def _close_report(self) -> None:
        if self._report is not None:
            self._loop.remove_reader(self._report.fileno())
            self._report.close()
            self._report = None

    def _finish(self, code: int) -> None:
        self._close_report()
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self.returncode is None:
            self.returncode = code
            self._done.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._done)


class ForkServer:
    """The zygote process, started once per SSH server (and again if it dies)."""

    def __init__(
        self, env: Mapping[str, str], cwd: Path | None, preload: bool = True, warm_session: Path | None = None
    ) -> None:
        self._env = dict(env)
        self._cwd = cwd
        self._preload = preload
        self._warm_session = warm_session
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._starting: asyncio.Future[None] | None = None
        self.pid: int | None = None
        self.preload_s: float | None = None
        self.read_ahead: str | None = None
        """The session folder the zygote read ahead for its sessions (``attach_ahead``), if it did."""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._control is not None

    async def start(self) -> None:
        """Start the zygote and wait until it has imported the TUI (once; concurrent callers wait together)."""
        if self.running:
            return
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        self._stop_process()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-m", "phasef_tui.ssh.zygote", "--fd", str(theirs.fileno())]
        if not self._preload:
            argv.append("--no-preload")
        elif self._warm_session is not None:
            argv += ["--warm-session", str(self._warm_session)]
        try:
            self._proc = subprocess.Popen(
                argv,
                pass_fds=[theirs.fileno()],
                env=self._env,
                cwd=str(self._cwd) if self._cwd else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise ForkServerError(f"cannot start the session server: {exc}") from exc
        finally:
            theirs.close()
        data, why = await _receive(ours, READY_TIMEOUT_S)
        message = _decode(data)
        if "ready" not in message:
            why = why or f"exit status {self._proc.wait(5) if not data else 0}"
            ours.close()
            self._stop_process()
            raise ForkServerError(f"the session server did not start ({why})")
        ours.setblocking(True)
        ours.settimeout(FORK_TIMEOUT_S)
        self._control = ours
        self.pid = int(message["ready"])
        self.preload_s = float(message.get("preload_s", 0.0))
        read_ahead = message.get("read_ahead")
        self.read_ahead = read_ahead if isinstance(read_ahead, str) else None

    async def launch(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None, slave: int) -> ForkedProcess:
        """A new session process running ``argv`` on the terminal ``slave`` (the caller keeps and closes it)."""
        await self.start()
        assert self._control is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        request = {"argv": list(argv), "env": dict(env), "cwd": str(cwd) if cwd else None}
        try:
            socket.send_fds(self._control, [json.dumps(request).encode()], [slave, theirs.fileno()])
        except OSError as exc:
            ours.close()
            self._stop_process()  # the next session starts a new one
            raise ForkServerError(f"the session server is gone: {exc}") from exc
        finally:
            theirs.close()
        data, _why = await _receive(ours, FORK_TIMEOUT_S)
        message = _decode(data)
        if not isinstance(message.get("pid"), int):
            ours.close()
            raise ForkServerError(str(message.get("error") or "the session server did not answer"))
        return ForkedProcess(message["pid"], ours)

    def _stop_process(self) -> None:
        if self._control is not None:
            self._control.close()  # the zygote exits when it sees the socket close
            self._control = None
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    async def close(self) -> None:
        """Stop the zygote (sessions it forked are not touched; the server stops them itself)."""
        await asyncio.get_running_loop().run_in_executor(None, self._stop_process)


async def _receive(sock: socket.socket, timeout: float) -> tuple[bytes, str]:
    """The session server's next message on ``sock`` (left non-blocking): ``b""`` if the socket closed, or if
    nothing came within ``timeout`` or it failed, and then why (the error; empty when the socket was closed)."""
    sock.setblocking(False)
    try:
        return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), timeout), ""
    except (TimeoutError, OSError) as exc:
        return b"", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _decode(data: bytes) -> dict[str, Any]:
    try:
        message = json.loads(data) if data else {}
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}
