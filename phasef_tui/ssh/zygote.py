"""The pre-forked session server: one interpreter that has imported the TUI once and forks a process per SSH session.

Starting a fresh interpreter per session costs the imports (Textual, Rich, the app: most of a second on a busy
machine) and ~35 MB of private memory per session. This process pays the imports once, warms what can be warmed
without a session (the TUI's modules, its stylesheet parser's caches), moves everything it built to the garbage
collector's permanent generation (``gc.freeze``: a collection in a child would otherwise write to every shared
object's header and copy every page), and then forks one child per session. The children share the zygote's pages
copy-on-write, so a session's memory is what it builds for itself.

Isolation is the same as before: each session is still a process of its own, in a session (``setsid``) and process
group of its own, on its own PTY, with the environment built for it by the server (the zygote itself is started with
the server's allow-listed environment, so no secret is in its memory to inherit). It is a fresh ``exec`` of the
interpreter, not a fork of the SSH server, so a session never holds the host key or another session's state.

Protocol, over a ``SOCK_SEQPACKET`` socket pair inherited from the server (no path on disk: nothing else can talk to
it): the zygote sends ``{"ready": PID, "preload_s": S, "read_ahead": DIR or null}`` once (``read_ahead``: the session
folder it read ahead for its sessions, ``attach_ahead``); the server sends one message per session, JSON
``{"argv", "env", "cwd"}`` with two file descriptors attached (``SCM_RIGHTS``): the PTY's slave side and the write
end of a report socket. On the report socket the zygote answers ``{"pid": N}`` after the fork (or ``{"error": ...}``)
and ``{"exit": CODE}`` when it has reaped the child (negative: the signal that killed it), then closes it. A report
socket that closes without an exit means the zygote is gone. When the server's end of the control socket closes, the
zygote exits; sessions already running are not touched (they end with their PTY).

A command ``[python, -m, MODULE, args...]`` or ``[python, SCRIPT, args...]`` runs in the child as it would in a new
interpreter (``runpy``, ``__name__ == "__main__"``, ``sys.argv`` set); any other program is ``exec``-ed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import io
import json
import os
import runpy
import select
import signal
import socket
import sys
import termios
import time
from dataclasses import dataclass
from typing import Any

from phasef_tui.ssh.pty_child import default_session_signals
from phasef_tui.ssh.warmup import preload

MAX_MESSAGE = 256 * 1024
TUI_PRELOAD = (
    "asyncio",
    "rich.console",
    "rich.text",
    "rich.segment",
    "textual.app",
    "textual.widgets",
    "textual.css.parse",
    "textual.drivers.linux_driver",
    "phasef_tui.app",
    "phasef_tui.driver",  # the terminal driver each session's app starts with
    "phasef_tui.session_source",
    "phasef_tui.screens",
    "phasef_tui.screens.compare",
    "phasef_tui.screens.sessions",
    "phasef_tui.screens.help",
    "phasef_tui.theming",
    "phasef_tui.commands.run",
    "phasef_tui.commands._common",
    "phasef_tui.ssh.attach",  # what an SSH session runs (``hub.attach_command``)
    # what `phasef attach` imports besides the TUI: imported in a child, a module costs it its memory and the
    # pages of the importer it writes to (~4 MB per session for these)
    "phasef_tui.replay_source",  # the attached TUI's source (replay keys, timeline)
    "pipeline.session_paths",  # how the CLI finds a session folder and its control socket (not the engine)
    "watchfiles",  # the journal's follower where there is no inotify, imported in its thread
    "ctypes",  # the journal's follower on Linux (inotify through the C library), imported in its thread
)
# commands ``-m MODULE ARGS`` run by calling MODULE's function with ARGS, not by executing MODULE again: the module
# is imported and warmed here, a new copy of it would be built in each child (``main(argv) -> exit status``)
ENTRY_POINTS = {"phasef_tui.cli": "main", "phasef_tui.ssh.attach": "main"}


@dataclass
class Job:
    """What a forked child runs: a Python command in this interpreter, or another program."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None


def serve(control: socket.socket, preload_s: float, read_ahead: str | None = None) -> Job | None:
    """Fork a child per request until the server closes the control socket. Returns only in a child.

    Between two forks this loop runs as little Python as it can (``poll``, file descriptors as plain integers, the
    pid reply formatted as bytes): each page the session server writes after a fork leaves that page's original to
    the child forked last, as the child's own memory. Measured: the loop wrote ~510 KB of pages per request with
    ``selectors``, socket objects and ``json`` replies, ~415 KB like this (~0.1 MB less per session)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wakeup fd is written
    reports: dict[int, int] = {}  # child pid -> the write end of its report socket
    ready = {"ready": os.getpid(), "preload_s": round(preload_s, 3), "read_ahead": read_ahead}
    control.send(json.dumps(ready).encode())
    poller = select.poll()
    control_fd = control.fileno()
    poller.register(control_fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == control_fd:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(control, MAX_MESSAGE, 2)
                except OSError:
                    data, fds = b"", []
                if not data:
                    return None  # the server is gone: exit; running sessions end with their terminals
                job = _fork(data, fds, reports)
                if job is not None:  # the child: drop everything that belongs to the zygote
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.close(wake_r)
                    os.close(wake_w)
                    control.close()
                    return job
            else:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                _reap(reports)


def _fork(data: bytes, fds: list[int], reports: dict[int, int]) -> Job | None:
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        return None
    slave, report = fds
    try:
        request = json.loads(data)
        job = Job(
            [str(a) for a in request["argv"]], {str(k): str(v) for k, v in request["env"].items()}, request.get("cwd")
        )
        if not job.argv:
            raise ValueError("empty argv")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        _send(report, {"error": f"bad request: {exc}"})
        os.close(report)
        os.close(slave)
        return None
    try:
        pid = os.fork()
    except OSError as exc:
        _send(report, {"error": f"fork failed: {exc}"})
        os.close(report)
        os.close(slave)
        return None
    if pid == 0:
        for other in reports.values():
            os.close(other)
        reports.clear()
        os.close(report)
        _become_session(slave, job)
        return job
    os.close(slave)
    reports[pid] = report
    _write(report, b'{"pid": %d}' % pid)
    return None


def _reap(reports: dict[int, int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        report = reports.pop(pid, None)
        if report is not None:
            _send(report, {"exit": os.waitstatus_to_exitcode(status)})
            os.close(report)


def _send(report: int, message: dict[str, Any]) -> None:
    _write(report, json.dumps(message).encode())


def _write(report: int, data: bytes) -> None:
    try:
        os.write(report, data)  # (a SOCK_SEQPACKET socket: one message, whole or not at all)
    except OSError:
        pass  # the server gave up on this session; the child is reaped all the same


def _become_session(slave: int, job: Job) -> None:
    """In the child: a session of its own on the PTY, the session's environment and folder, fresh stdio.

    The PTY becomes the session's controlling terminal, as sshd makes it for a login: if the SSH server dies without
    hanging up on the session (killed, crashed), its end closes the PTY's master side and the kernel hangs up on
    the session (SIGHUP), which ends the TUI instead of leaving it running on a terminal nobody reads."""
    os.setsid()
    default_session_signals()  # (a server started under nohup ignores SIGHUP, and so would the session)
    with contextlib.suppress(OSError):  # without it, the session runs as before; only that safety net is missing
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    encoding, errors = sys.__stdout__.encoding if sys.__stdout__ else "utf-8", "strict"
    # as the interpreter makes them at start-up for a terminal (Textual writes to sys.__stderr__)
    stdin = io.TextIOWrapper(open(0, "rb", closefd=False), encoding=encoding, errors=errors)
    stdout = io.TextIOWrapper(open(1, "wb", closefd=False), encoding=encoding, errors=errors, line_buffering=True)
    stderr = io.TextIOWrapper(
        open(2, "wb", closefd=False), encoding=encoding, errors="backslashreplace", line_buffering=True
    )
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    setattr(sys, "__stdin__", stdin)  # noqa: B010 (typeshed marks them final; they are plain attributes)
    setattr(sys, "__stdout__", stdout)  # noqa: B010
    setattr(sys, "__stderr__", stderr)  # noqa: B010
    os.environ.clear()
    os.environ.update(job.env)
    if job.cwd:
        os.chdir(job.cwd)


def run_job(job: Job) -> None:
    """Run the session's command in this process, as a new interpreter would; returns only by SystemExit."""
    argv = job.argv
    entry = ENTRY_POINTS.get(argv[2]) if len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m" else None
    module = sys.modules.get(argv[2]) if entry else None
    if module is not None and callable(getattr(module, str(entry), None)):
        sys.argv = [str(getattr(module, "__file__", argv[2])), *argv[3:]]
        sys.path[0] = os.getcwd()
        sys.exit(getattr(module, str(entry))(argv[3:]))
    if len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m":
        sys.argv = [argv[2], *argv[3:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        sys.exit(0)
    if len(argv) >= 2 and argv[0] == sys.executable and not argv[1].startswith("-"):
        sys.argv = argv[1:]
        sys.path[0] = os.path.dirname(os.path.abspath(argv[1]))
        runpy.run_path(argv[1], run_name="__main__")
        sys.exit(0)
    try:
        os.execvpe(argv[0], argv, dict(os.environ))
    except OSError as exc:
        sys.stderr.write(f"phasef: cannot start {argv[0]}: {exc}\n")
        sys.exit(127)


def main() -> None:
    parser = argparse.ArgumentParser(description="phasef's pre-forked SSH session server (started by phasef serve)")
    parser.add_argument("--fd", type=int, required=True, help="the control socket inherited from the server")
    parser.add_argument("--no-preload", action="store_true", help="import nothing ahead (a generic fork server)")
    parser.add_argument("--warm-session", metavar="DIR", help="run the TUI once on this session before forking")
    args = parser.parse_args()
    control = socket.socket(fileno=args.fd)
    began = time.perf_counter()
    if not args.no_preload:
        preload(TUI_PRELOAD, warm=True, warm_session=args.warm_session)
    else:
        gc.collect()
        gc.freeze()
    from phasef_tui import attach_ahead

    read_ahead = attach_ahead.pending()  # (the served session, if the warm-up could read it)
    job = serve(control, time.perf_counter() - began, str(read_ahead) if read_ahead else None)
    if job is None:
        sys.exit(0)
    run_job(job)


if __name__ == "__main__":
    main()
