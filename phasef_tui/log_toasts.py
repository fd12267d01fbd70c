"""Warnings logged while a TUI runs: shown as notifications, and printed once the terminal is back.

While Textual runs, ``sys.stderr`` is its capture (what is written there is dropped outside its dev console), and
the terminal itself is the screen: a warning written to the terminal's stderr would land over the screen, one written
to the capture would be lost. So a ``ToastHandler`` on the root logger shows each warning or error of an app's run as
a notification (the same text at most once per ``REPEAT_S``, at most ``BURST`` in a ``REPEAT_S``; the rest counted
in one more notification) and keeps every one (up to ``KEPT``) for ``print_kept``, which the app calls once Textual
has given the terminal back. Records can come from any thread: the notification is made on the app's loop.

One handler serves a process (``show_warnings``): made and put on the root logger by the first app, it is only
bound to each later one. An SSH session forked from the session server, whose warm-up ran an app, so makes no
handler, lock or formatter of its own: every function a session runs that the session server's did not costs it
pages copied from the session server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio  # (not at run time: the CLI reads LINE_FORMAT before the trace viewer imports asyncio its way)

LINE_FORMAT = "%(levelname)s %(name)s: %(message)s"
"""How a logged record reads on stderr: the CLI's handler and the lines printed after a TUI (``print_kept``)."""
REPEAT_S = 10.0
BURST = 3
KEPT = 200


class ToastHandler(logging.Handler):
    """Shows WARNING and above as notifications through ``notify(message, title, severity)``, called on ``loop``,
    while bound to an app (``bind``); unbound, it does nothing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter(LINE_FORMAT))
        self._clock = clock
        self.bind(None, None)

    def bind(
        self, notify: Callable[[str, str, str], object] | None, loop: asyncio.AbstractEventLoop | None
    ) -> ToastHandler:
        """Show the warnings from now on through ``notify`` on ``loop``, kept afresh (None: show and keep none)."""
        self._notify, self._loop = notify, loop
        self._shown: dict[str, float] = {}
        self._window: list[float] = []
        self._held = 0
        self.kept: list[str] = []
        self.dropped = 0
        """Records beyond ``KEPT`` (counted, not kept)."""
        return self

    def unbind(self) -> None:
        """Show no more (what was kept stays, for ``print_kept``)."""
        self._notify = self._loop = None

    def emit(self, record: logging.LogRecord) -> None:
        notify, loop = self._notify, self._loop
        if notify is None or loop is None:
            return
        try:
            line = self.format(record)
            message = record.getMessage()
        except Exception:  # (a record whose arguments do not format: logging's own report of it)
            self.handleError(record)
            return
        if len(self.kept) < KEPT:
            self.kept.append(line)
        else:
            self.dropped += 1
        now = self._clock()
        if now - self._shown.get(message, -REPEAT_S) < REPEAT_S:
            return  # the same warning again: it is on screen already
        self._window = [t for t in self._window if now - t < REPEAT_S]
        if len(self._window) >= BURST:
            self._held += 1
            return
        self._shown[message] = now
        self._window.append(now)
        held, self._held = self._held, 0
        severity = "error" if record.levelno >= logging.ERROR else "warning"
        text = message if not held else f"{message}\n({held} more warnings held back: printed when phasef exits)"
        try:
            loop.call_soon_threadsafe(notify, text, record.levelname.lower(), severity)
        except RuntimeError:
            pass  # the loop is closed: the app is gone (the record is kept for print_kept)


shared: ToastHandler | None = None
"""The process's handler, once an app has run (``show_warnings``)."""


def show_warnings(notify: Callable[[str, str, str], object], loop: asyncio.AbstractEventLoop) -> ToastHandler:
    """The process's handler on the root logger (a new one when there is none there: the first app, or someone took
    it off), bound to an app."""
    global shared
    if shared is None or shared not in logging.getLogger().handlers:
        shared = ToastHandler()
        logging.getLogger().addHandler(shared)
    return shared.bind(notify, loop)


def print_kept(handler: ToastHandler | None, stream: IO[str]) -> None:
    """What was logged while the app ran, once the terminal is back (nothing when nothing was)."""
    if handler is None:
        return
    for line in handler.kept:
        print(line, file=stream)
    if handler.dropped:
        print(f"… {handler.dropped} more warnings", file=stream)
