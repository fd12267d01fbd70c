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
"""

from __future__ import annotations

import termios
from typing import Any

from textual.drivers.linux_driver import LinuxDriver


class PhasefLinuxDriver(LinuxDriver):
    _app_mode_attrs: list[Any] | None = None
    """The terminal's settings as the application mode left them (None: not a terminal, or not started)."""

    def start_application_mode(self) -> None:
        super().start_application_mode()  # type: ignore[no-untyped-call]
        self._app_mode_attrs = self._terminal_attrs()

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


def driver_for(base: type[Any]) -> type[Any]:
    """The driver an app should use in place of ``base``, the one Textual chose: this one in place of Textual's Linux
    driver; any other (Windows, a driver named by ``TEXTUAL_DRIVER``, a subclass) is kept."""
    return PhasefLinuxDriver if base is LinuxDriver else base
