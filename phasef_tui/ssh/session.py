"""One SSH session channel: a terminal UI in its own PTY process, and the limits that keep the session in bounds.

Only an interactive terminal is served: the client must request a PTY and a shell. A session without a PTY gets one
line saying so and exit status 1; ``exec`` and subsystem requests (commands, sftp, scp) are refused outright.

A session ends when its TUI exits (its exit status becomes the client's), when the client goes away (the TUI is hung
up), after ``idle_timeout`` without a keystroke or resize, after ``stall_timeout`` with output the client does not
take, or when the server shuts down (the TUI is stopped; the supervised run is another process and goes on). When the
TUI did not exit by itself the terminal modes it set (alternate screen, mouse reporting, hidden cursor) are reset so
the operator's terminal is usable again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import asyncssh

from phasef_tui.ssh.authorized_keys import Operator
from phasef_tui.ssh.hub import DEFAULT_TERM, SessionHub, ignored_client_variables, session_environment
from phasef_tui.ssh.pty_child import PtyChild

NO_TERMINAL = "phasef: this server only runs the terminal UI; connect with a terminal (ssh -t) and without a command"
NO_TERMINAL_FOR_KEY = "phasef: this key may not open a terminal (no-pty or restrict in authorized_keys)"
EXIT_REFUSED = 1
EARLY_INPUT_LIMIT = 4096
ENV_NAMES_LOGGED = 16  # names of ignored client variables listed in the log line; the rest are counted
TERMINAL_RESET = (
    b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l"  # mouse reporting off
    b"\x1b[?1004l\x1b[?2004l"  # focus events, bracketed paste off
    b"\x1b[0m\x1b[?25h"  # plain attributes, cursor shown
)
ALT_SCREEN_ON = b"\x1b[?1049h"
ALT_SCREEN_OFF = b"\x1b[?1049l"  # also restores the cursor, so it is sent only to leave an alternate screen


class ConnectionInfo:
    """What the connection learnt at login, shared by its sessions."""

    def __init__(self, conn_id: int, peer: str, username: str, operator: Operator) -> None:
        self.conn_id = conn_id
        self.peer = peer
        self.username = username
        self.operator = operator


class OperatorSession(asyncssh.SSHServerSession[bytes]):
    def __init__(self, hub: SessionHub, info: ConnectionInfo, on_end: Any = None) -> None:
        self.hub = hub
        self.info = info
        self._on_end = on_end
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._term: str | None = None
        self._size = (80, 24, 0, 0)
        self._child: PtyChild | None = None
        self._started_child = False
        self._alt_screen = False
        self._early_input = bytearray()  # keystrokes that arrive before the TUI's terminal exists
        self._admitted = False
        self._ending = False
        self._channel_open = False
        self._begun = time.monotonic()
        self._last_input = time.monotonic()
        self._idle_handle: asyncio.TimerHandle | None = None
        self._stall_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.done = asyncio.get_running_loop().create_future()

    # -- requests from the client -------------------------------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan
        self._channel_open = True
        high = self.hub.settings.output_high_water
        chan.set_write_buffer_limits(high=high, low=high // 4)

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Any) -> bool:
        # a key that may not open a terminal is told so in session_started (a refused PTY request would make
        # ``ssh -tt`` give up with a less helpful message of its own)
        self._term = term_type or DEFAULT_TERM
        cols, rows, xpix, ypix = term_size
        self._size = (cols or 80, rows or 24, xpix, ypix)
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._log("refused", what="exec", reason="commands are not served")
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        self._log("refused", what=f"subsystem {subsystem}", reason="subsystems are not served")
        return False

    def break_received(self, msec: int) -> bool:
        return False

    def signal_received(self, signal: str) -> None:
        self._log("refused", what=f"signal {signal}", reason="signals are not forwarded")

    def eof_received(self) -> bool:
        return True  # the client closed its input: the TUI keeps showing until it quits or the channel closes

    def session_started(self) -> None:
        try:
            self._begin()
        except Exception as exc:  # one broken session must not take the server (or its connection) down
            self._log("error", where="session start", error=repr(exc))
            self._end("error", message="phasef: internal error starting the session", status=EXIT_REFUSED)

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self._last_input = time.monotonic()
        if self._ending:
            return
        if self._child is not None:
            self._child.write(data)
        elif len(self._early_input) < EARLY_INPUT_LIMIT:
            self._early_input += data[: EARLY_INPUT_LIMIT - len(self._early_input)]

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._last_input = time.monotonic()
        self._size = (width or self._size[0], height or self._size[1], pixwidth, pixheight)
        if self._child is not None and self._started_child and not self._ending:
            self._child.resize(*self._size)

    def pause_writing(self) -> None:
        if self._child is not None:
            self._child.pause_output()
        timeout = self.hub.settings.stall_timeout
        if timeout > 0 and self._stall_handle is None:
            self._stall_handle = asyncio.get_running_loop().call_later(timeout, self._stalled)

    def resume_writing(self) -> None:
        if self._stall_handle is not None:
            self._stall_handle.cancel()
            self._stall_handle = None
        if self._child is not None and not self._ending:
            self._child.resume_output()

    def connection_lost(self, exc: Exception | None) -> None:
        self._channel_open = False
        self._end("client closed" if exc is None else f"connection lost: {exc}")

    # -- the TUI process ------------------------------------------------------------------------------------------

    def _begin(self) -> None:
        assert self._chan is not None
        client_env = dict(self._chan.get_environment())
        by_reason: dict[str, list[str]] = {}
        for name, why in ignored_client_variables(client_env):
            by_reason.setdefault(why, []).append(name)
        for why, names in by_reason.items():  # one line per kind of refusal, the names (never the values) in it
            shown = names[:ENV_NAMES_LOGGED] + (
                [f"{len(names) - ENV_NAMES_LOGGED} more"] if names[ENV_NAMES_LOGGED:] else []
            )
            self._log("refused", what=f"env {' '.join(shown)}", reason=why)
        if not self.info.operator.terminal_allowed:
            self._log("refused", what="pty", reason="key option no-pty/restrict")
            self._end("refused: no pty for this key", message=NO_TERMINAL_FOR_KEY, status=EXIT_REFUSED)
            return
        if self._term is None:
            self._log("refused", what="session", reason="no pty")
            self._end("refused: no pty", message=NO_TERMINAL, status=EXIT_REFUSED)
            return
        refusal = self.hub.admit(self)
        if refusal:
            self._log("refused", what="session", reason=refusal)
            self._end("refused: limit", message=refusal, status=EXIT_REFUSED)
            return
        self._admitted = True
        session_dir, why = self.hub.session_dir()
        if session_dir is None:
            self._log("refused", what="session", reason=why)
            self._end("refused: no session", message=why, status=EXIT_REFUSED)
            return
        self._child = PtyChild(self._forward_output, self._input_backlog)
        if self._early_input:
            self._child.write(bytes(self._early_input))  # the PTY holds it until the TUI reads
            self._early_input.clear()
        self._spawn(self._run(session_dir, client_env))

    async def _run(self, session_dir: Path, client_env: dict[str, str]) -> None:
        assert self._child is not None and self._term is not None
        settings = self.hub.settings
        argv = list(settings.command(self.info.operator, session_dir))
        env = session_environment(self.info.operator, self._term, client_env)
        start_size = self._size
        try:
            await self._child.start(argv, env, settings.cwd, start_size, fork_server=self.hub.fork_server)
        except OSError as exc:
            self._log("error", where="starting the TUI", error=str(exc))
            self._end("error", message=f"phasef: cannot start the terminal UI: {exc}", status=EXIT_REFUSED)
            return
        if self._ending:
            return  # the client left while the TUI was starting; stop() has already dealt with it
        self._started_child = True
        if self._size != start_size:
            self._child.resize(*self._size)  # a resize arrived while the TUI was starting
        self._log(
            "session_start",
            pid=self._child.pid,
            start="fork" if self.hub.fork_server is not None else "spawn",
            session=session_dir.name,
            term=env["TERM"],
            colorterm=env.get("COLORTERM"),
            size=f"{self._size[0]}x{self._size[1]}",
        )
        self._schedule_idle_check()
        code = await self._child.wait()
        self._end("exited", status=code if code >= 0 else 128 - code, exit_code=code)

    def _forward_output(self, data: bytes) -> None:
        if self._chan is not None and self._channel_open and not self._chan.is_closing():
            on, off = data.rfind(ALT_SCREEN_ON), data.rfind(ALT_SCREEN_OFF)
            if on != off:
                self._alt_screen = on > off
            self._chan.write(data)

    def _input_backlog(self, full: bool) -> None:
        if self._chan is None or not self._channel_open:
            return
        if full:
            self._chan.pause_reading()
        else:
            self._chan.resume_reading()

    # -- limits -------------------------------------------------------------------------------------------------

    def _schedule_idle_check(self) -> None:
        timeout = self.hub.settings.idle_timeout
        if timeout <= 0 or self._ending:
            return
        remaining = self._last_input + timeout - time.monotonic()
        if remaining <= 0:
            minutes = f"{timeout / 60:g} min" if timeout >= 60 else f"{timeout:g} s"
            self._end("idle", message=f"phasef: no input for {minutes}; disconnected", status=EXIT_REFUSED)
            return
        self._idle_handle = asyncio.get_running_loop().call_later(remaining, self._schedule_idle_check)

    def _stalled(self) -> None:
        self._stall_handle = None
        # whatever is queued cannot reach a client that takes nothing, so the channel is dropped, not closed politely
        self._end("stalled: the client took no output", abort=True)

    # -- ending -----------------------------------------------------------------------------------------------

    def detach(self, message: str) -> None:
        """Server shutdown: stop this TUI (the run goes on) and tell the operator why."""
        self._end("server shutdown", message=message, status=0)

    def _end(
        self,
        reason: str,
        message: str | None = None,
        status: int | None = None,
        exit_code: int | None = None,
        abort: bool = False,
    ) -> None:
        if self._ending:
            return
        self._ending = True
        for handle in (self._idle_handle, self._stall_handle):
            if handle is not None:
                handle.cancel()
        self._spawn(self._close_out(reason, message, status, exit_code, abort))

    async def _close_out(
        self, reason: str, message: str | None, status: int | None, exit_code: int | None, abort: bool
    ) -> None:
        try:
            if self._child is not None and exit_code is None:
                exit_code = await self._child.stop(self.hub.settings.shutdown_grace)
            chan = self._chan
            if chan is not None and abort:
                chan.abort()
            elif chan is not None and self._channel_open and not chan.is_closing():
                newline = "\r\n" if self._term else "\n"
                if self._started_child and (exit_code != 0 or message):
                    chan.write(TERMINAL_RESET + (ALT_SCREEN_OFF if self._alt_screen else b""))
                if message:
                    chan.write_stderr(f"{message}{newline}".encode())
                chan.exit(status if status is not None else 0)
        except Exception as exc:
            self._log("error", where="ending the session", error=repr(exc))
            if self._chan is not None:
                self._chan.close()
        finally:
            if self._admitted:
                self.hub.release(self)
            if self._started_child:
                self._log(
                    "session_end",
                    reason=reason,
                    exit_code=exit_code,
                    term=self._term,
                    size=f"{self._size[0]}x{self._size[1]}",
                    duration_s=round(time.monotonic() - self._begun, 3),
                )
            if not self.done.done():
                self.done.set_result(None)
            if self._on_end is not None:
                self._on_end(self)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log("error", where="session task", error=repr(task.exception()))
            with contextlib.suppress(Exception):
                if self._chan is not None:
                    self._chan.close()

    def _log(self, kind: str, **fields: Any) -> None:
        op = self.info.operator
        self.hub.log.event(
            kind,
            conn=self.info.conn_id,
            peer=self.info.peer,
            user=self.info.username,
            operator=op.name,
            role=op.role,
            key=op.fingerprint,
            **fields,
        )
