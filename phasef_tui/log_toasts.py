"""Warnings logged while a TUI runs: shown as notifications, and printed once the terminal is back.

While Textual runs, ``sys.stderr`` is its capture (what is written there is dropped outside its dev console), and
the terminal itself is the screen: a warning written to the terminal's stderr would land over the screen, one written
to the capture would be lost. So a ``ToastHandler`` on the root logger, for the app's run, shows each warning or
error as a notification (the same text at most once per ``REPEAT_S``, at most ``BURST`` in a ``REPEAT_S``; the rest
counted in one more notification) and keeps every one (up to ``KEPT``) for ``print_kept``, which the app calls once
Textual has given the terminal back. Records can come from any thread: the notification is made on the app's loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import IO

REPEAT_S = 10.0
BURST = 3
KEPT = 200


class ToastHandler(logging.Handler):
    """Shows WARNING and above as notifications through ``notify(message, title, severity)``, called on ``loop``."""

    def __init__(
        self,
        notify: Callable[[str, str, str], object],
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self._notify = notify
        self._loop = loop
        self._clock = clock
        self._shown: dict[str, float] = {}
        self._window: list[float] = []
        self._held = 0
        self.kept: list[str] = []
        self.dropped = 0
        """Records beyond ``KEPT`` (counted, not kept)."""

    def emit(self, record: logging.LogRecord) -> None:
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
        self._call(text, record.levelname.lower(), severity)

    def _call(self, text: str, title: str, severity: str) -> None:
        try:
            self._loop.call_soon_threadsafe(self._notify, text, title, severity)
        except RuntimeError:
            pass  # the loop is closed: the app is gone (the record is kept for print_kept)


def print_kept(handler: ToastHandler | None, stream: IO[str]) -> None:
    """What was logged while the app ran, once the terminal is back (nothing when nothing was)."""
    if handler is None:
        return
    for line in handler.kept:
        print(line, file=stream)
    if handler.dropped:
        print(f"… {handler.dropped} more warnings", file=stream)
