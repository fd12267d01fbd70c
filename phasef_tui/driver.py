"""The terminal driver of phasef's TUIs: Textual's Linux driver, with a ``SIGCONT`` that does not start it twice.

Textual's driver resumes its application mode on every ``SIGCONT``, as if the app had been suspended by its own
``SIGTSTP`` handler (Ctrl+Z). A process stopped and continued from outside (``kill -STOP`` / ``kill -CONT``, a CPU
limiter such as ``cpulimit``, a debugger) was never suspended: its input and output threads still run, and each
``SIGCONT`` started another pair beside them. Measured on an attached TUI stopped and continued every 16-32 s: 45
threads after 20 minutes, each input thread waking 10 times a second (its CPU grew with every continue), all of them
reading the same terminal.

Here a ``SIGCONT`` resumes the application mode as Textual does only after the driver's own suspension. Otherwise
the threads are left as they are; if the terminal's settings were changed while the process was stopped (``stty
sane``, a shell that took the terminal back), the driver suspends and resumes itself as Ctrl+Z and ``fg`` would:
raw mode, the alternate screen and the app's screen come back, with one pair of threads.

A terminal that goes away ends the TUI. The kernel tells a process that its terminal hung up with ``SIGHUP``, but
only a process whose controlling terminal it is, and only if it does not ignore the signal (``nohup``); otherwise
Textual's input thread reads end-of-file in a loop, at full CPU, for ever (seen: a viewer on a closed pty, 90 % of a
core for 20 minutes). A thread waits for the hang-up (``poll`` asking for no event: only the hang-up or an error
wakes it, nothing else costs it anything) and then does what the hang-up would: ``SIGHUP`` to the process, or, when
that is ignored, the app's exit. Where the kernel's ``SIGHUP`` does reach the process (a terminal, an SSH session),
there is no such thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import termios
import threading
from typing import Any

from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver


class PhasefLinuxDriver(LinuxDriver):
    _app_mode_attrs: list[Any] | None = None
    """The terminal's settings as the application mode left them (None: not a terminal, or not started)."""

    _hangup_watch: threading.Thread | None = None
    _hangup_stop: int | None = None
    """The write end of the pipe that ends the watch (``stop_application_mode``)."""

    def start_application_mode(self) -> None:
        super().start_application_mode()  # type: ignore[no-untyped-call]
        self._app_mode_attrs = self._terminal_attrs()
        if self._app_mode_attrs is not None and self._hangup_watch is None and not hangup_reaches(self.fileno):
            stop_read, self._hangup_stop = os.pipe()
            self._hangup_watch = threading.Thread(
                target=self._wait_for_hangup,
                args=(asyncio.get_running_loop(), stop_read),
                name="phasef-hangup",
                daemon=True,
            )
            self._hangup_watch.start()

    def stop_application_mode(self) -> None:
        if self._hangup_stop is not None:
            # a byte, not only the close: a process forked meanwhile (a summary worker) holds the write end too
            with contextlib.suppress(OSError):
                os.write(self._hangup_stop, b"x")
            os.close(self._hangup_stop)
            self._hangup_stop = None
        if self._hangup_watch is not None:
            self._hangup_watch.join(timeout=1.0)
            self._hangup_watch = None
        super().stop_application_mode()

    def _wait_for_hangup(self, loop: asyncio.AbstractEventLoop, stop: int) -> None:
        poller = select.poll()
        try:
            poller.register(self.fileno, 0)  # no event asked for: POLLHUP, POLLERR and POLLNVAL come all the same
            poller.register(stop, select.POLLIN)
            woken = {fd for fd, _ in poller.poll()}
        except (OSError, ValueError):
            return
        finally:
            os.close(stop)
        if stop in woken or self.exit_event.is_set():
            return  # (the app is leaving, or suspended by Ctrl+Z: its terminal is not gone)
        if not sighup_ignored():
            os.kill(os.getpid(), signal.SIGHUP)  # what the kernel does for a process whose terminal it is
            return
        try:
            loop.call_soon_threadsafe(self._app.exit, None, 128 + signal.SIGHUP)
        except RuntimeError:
            pass  # the loop is closed: the app has ended

    def _terminal_attrs(self) -> list[Any] | None:
        try:
            return termios.tcgetattr(self.fileno)
        except (termios.error, OSError, ValueError):
            return None

    def _sigcont_application(self, *args: Any) -> None:
        if self._must_signal_resume:  # suspended by this driver (SIGTSTP): Textual's own resume
            super()._sigcont_application(*args)
            return
        if not self._auto_restart or self._app_mode_attrs is None:
            return  # (the app suspends and resumes itself, or there is no terminal to put back)
        if self._terminal_attrs() == self._app_mode_attrs:
            return  # stopped and continued from outside: the threads and the terminal are as they were
        self.suspend_application_mode()
        self._must_signal_resume = True  # (the app repaints its screen when the mode is back: SignalResume)
        self.resume_application_mode()


def sighup_ignored() -> bool:
    """``SIGHUP`` is ignored in this process (started under ``nohup``, or by a shell that ignores it)."""
    return signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


def hangup_reaches(fd: int) -> bool:
    """Whether the kernel's ``SIGHUP`` ends this process when the terminal ``fd`` hangs up: it is the process's
    controlling terminal (``tcgetpgrp`` answers only for that one) and ``SIGHUP`` is not ignored."""
    if sighup_ignored():
        return False
    try:
        os.tcgetpgrp(fd)
    except OSError:
        return False
    return True


def driver_for(base: type[Driver]) -> type[Driver]:
    """The driver an app should use in place of ``base``, the one Textual chose: this one in place of Textual's Linux
    driver; any other (Windows, a driver named by ``TEXTUAL_DRIVER``, a subclass) is kept."""
    return PhasefLinuxDriver if base is LinuxDriver else base
