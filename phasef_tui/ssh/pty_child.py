"""One program on the slave side of a fresh pseudo-terminal, driven from the event loop through the master side.

Each SSH session runs its TUI this way, so a session is a process of its own: a crash, a leak or a blocked write in
one operator's TUI cannot reach another's, nor the server. The child gets its own session (``setsid``), so stopping
it stops everything it started. Resizes are applied to the PTY and announced with SIGWINCH to the child's process
group as a local terminal would (the kernel sends it to the foreground group only, and a program may run others).

Flow control both ways keeps memory bounded: the session stops reading the child's output while the SSH channel is
backed up (the child then blocks in its own writes), and asks the channel to stop reading from the client while
keystrokes wait for a child that is not reading them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import struct
import sys
import termios
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from phasef_tui.ssh.prefork import ForkServer

READ_CHUNK = 65536
INPUT_HIGH_WATER = 64 * 1024
DRAIN_AFTER_EXIT_S = 0.5


class ChildProcess(Protocol):
    """What the PTY needs of its program's process: a spawned one or one forked by the session server."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


SESSION_SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM")
"""Signals a session starts with at their default action, as sshd starts a login: a server started under ``nohup``
or in the background of a shell ignores SIGHUP (and SIGINT, SIGQUIT), and a program inherits what is ignored; a TUI
ignoring SIGHUP would go on, reading end-of-file in a loop, after its terminal hung up."""

TAKE_TERMINAL = (
    "import fcntl, os, signal, sys, termios\n"
    f"for name in {SESSION_SIGNALS!r}:\n    signal.signal(getattr(signal, name), signal.SIG_DFL)\n"
    "try:\n    fcntl.ioctl(0, termios.TIOCSCTTY, 0)\nexcept OSError:\n    pass\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)
"""Run in the new session before the program: the session's signals at their default actions, and its terminal
(stdin) becomes the session's controlling terminal."""


def default_session_signals() -> None:
    """``SESSION_SIGNALS`` as a new interpreter starts with them, in this process (a session forked by the session
    server): default actions, and Python's own SIGINT handler."""
    for name in SESSION_SIGNALS:
        sig = getattr(signal, name)
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)


def with_controlling_terminal(argv: Sequence[str]) -> list[str]:
    """``argv`` started through a small exec wrapper that first makes the PTY the new session's controlling
    terminal, as sshd does for a login (and as the session server's children do): if the SSH server dies without
    hanging up on the session, its end closes the PTY's master side and the kernel hangs up on the session, which
    ends the TUI instead of leaving it running on a terminal nobody reads. The wrapper execs the program, so its pid
    is the program's. (Not ``preexec_fn``: it is not safe in a process with threads.)"""
    return [sys.executable, "-I", "-S", "-c", TAKE_TERMINAL, *argv]


def set_window_size(fd: int, cols: int, rows: int, xpix: int = 0, ypix: int = 0) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, xpix, ypix))


class PtyChild:
    """Spawn with ``start``; feed ``write``; output arrives at ``on_output``; ``wait`` or ``stop`` ends it."""

    def __init__(
        self,
        on_output: Callable[[bytes], None],
        on_input_backlog: Callable[[bool], None] = lambda _full: None,
    ) -> None:
        self._on_output = on_output
        self._on_input_backlog = on_input_backlog
        self._loop = asyncio.get_running_loop()
        self._master, slave = os.openpty()
        self._slave: int | None = slave
        os.set_blocking(self._master, False)
        self._proc: ChildProcess | None = None
        self._pending = bytearray()
        self._backlogged = False
        self._reading = False
        self._eof = asyncio.Event()
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None = None,
        size: tuple[int, int, int, int] = (80, 24, 0, 0),
        fork_server: ForkServer | None = None,
    ) -> None:
        """Run ``argv`` on the PTY: a new process, or one forked by ``fork_server`` (the pre-forked session server,
        which runs a Python command in an interpreter that has already imported it)."""
        slave = self._slave
        if slave is None or self._closed:
            raise OSError("the terminal was closed before the program started")
        set_window_size(self._master, *size)
        self._slave = None  # start() owns the slave now, and closes it below
        try:
            if fork_server is not None:
                self._proc = await fork_server.launch(argv, env, cwd, slave)
            else:
                self._proc = await asyncio.create_subprocess_exec(
                    *with_controlling_terminal(argv),
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    env=dict(env),
                    cwd=str(cwd) if cwd else None,
                    start_new_session=True,
                )
        finally:
            # the parent keeps only the master side: when the child (and its children) close the slave, reads
            # on the master end with EIO, which is how the session learns the program is gone
            os.close(slave)
        if self._closed:  # stopped while it was starting
            self._signal_group(signal.SIGKILL)
            await self._proc.wait()
            return
        self.resume_output()

    def write(self, data: bytes) -> None:
        """Keystrokes for the child; whatever the PTY does not take now waits (bounded by back-pressure)."""
        if self._closed:
            return
        if not self._pending:
            try:
                written = os.write(self._master, data)
            except BlockingIOError:
                written = 0
            except OSError:
                return  # the child is gone; its exit is reported by wait()
            data = data[written:]
            if not data:
                return
            self._loop.add_writer(self._master, self._flush_input)
        self._pending += data
        if len(self._pending) > INPUT_HIGH_WATER and not self._backlogged:
            self._backlogged = True
            self._on_input_backlog(True)

    def _flush_input(self) -> None:
        try:
            written = os.write(self._master, self._pending)
        except BlockingIOError:
            return
        except OSError:
            written = len(self._pending)
        del self._pending[:written]
        if not self._pending:
            self._loop.remove_writer(self._master)
        if self._backlogged and len(self._pending) <= INPUT_HIGH_WATER // 4:
            self._backlogged = False
            self._on_input_backlog(False)

    def resize(self, cols: int, rows: int, xpix: int = 0, ypix: int = 0) -> None:
        if self._closed:
            return
        set_window_size(self._master, cols, rows, xpix, ypix)
        self._signal_group(signal.SIGWINCH)

    def pause_output(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._master)
            self._reading = False

    def resume_output(self) -> None:
        if not self._reading and not self._eof.is_set() and not self._closed:
            self._loop.add_reader(self._master, self._read_output)
            self._reading = True

    def _read_output(self) -> None:
        try:
            data = os.read(self._master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EBADF):
                raise
            data = b""
        if not data:
            self.pause_output()
            self._eof.set()
            return
        self._on_output(data)

    async def wait(self) -> int:
        """The child's exit status (negative: killed by that signal), once its last output has been read."""
        assert self._proc is not None, "start() first"
        code = await self._proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._eof.wait(), DRAIN_AFTER_EXIT_S)
        self._signal_group(signal.SIGKILL)  # anything it left behind holding the terminal
        self._close()
        return code

    async def stop(self, grace: float = 2.0) -> int:
        """Hang up on the child as a closed terminal would; kill its whole group if it lingers."""
        if self._proc is None:
            self._close()
            return 0
        if self._proc.returncode is None:
            self._signal_group(signal.SIGHUP)
            try:
                await asyncio.wait_for(self._proc.wait(), grace)
            except TimeoutError:
                self._signal_group(signal.SIGKILL)
        code = await self._proc.wait()
        self._signal_group(signal.SIGKILL)
        self._close()
        return code

    def _signal_group(self, sig: int) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pause_output()
        self._eof.set()  # nothing more will be read
        self._loop.remove_writer(self._master)
        self._pending.clear()
        os.close(self._master)
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
