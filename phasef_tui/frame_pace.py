"""How often the app's frames run: the full rate while something changes, a slow one on a live session where
nothing does, none on a settled one. Any input, resize or change the source reports brings the full rate back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.timer import Timer

QUIET_FRAMES = 10
"""Frames in a row with nothing changed before the frame rate drops: on a settled source the frames stop, on a
live one they slow to ``LIVE_IDLE_RATE``."""
LIVE_IDLE_RATE = 4.0
"""Frames per second on a live session where nothing changes (a gate waiting for hours, a long quiet step): the
running clocks still tick each second, a new log line or trace record shows within a quarter second, and a journal
event brings the full rate back at once (the journal's reader reports it). Measured at a waiting gate: an attached
TUI used 1.7 % of a core at the full rate, most of it the 20 polls a second."""


class FramePace:
    """The frame timers of one app: ``start`` once it runs, then ``after_frame`` at the end of each frame."""

    def __init__(self, set_interval: Callable[..., Timer], frame: Callable[[], Any], rate: float) -> None:
        self._set_interval = set_interval
        self._frame = frame
        self._rate = rate
        self._full: Timer | None = None
        self._slow: Timer | None = None
        self._quiet = 0
        self.paused = False
        """True while no frame runs (a settled source and nothing happening)."""
        self.slowed = False
        """True while frames run at ``LIVE_IDLE_RATE`` (a live source and nothing happening)."""

    def start(self) -> None:
        self._full = self._set_interval(1 / self._rate, self._frame, name="frame")

    def after_frame(self, changed: bool, settled: Callable[[], bool]) -> None:
        """A frame ran: ``changed`` whether it drew anything new; ``settled`` whether the source can still change
        without saying so (asked only once the frames have been quiet)."""
        self._quiet = 0 if changed else self._quiet + 1
        if changed and self.slowed:
            self.wake()
        elif self._quiet >= QUIET_FRAMES:
            if settled():
                self._pause()
            else:
                self._slow_down()

    def _pause(self) -> None:
        if self._slow is not None and self.slowed:
            self.slowed = False
            self._slow.pause()
        if self._full is not None and not self.paused:
            self.paused = True
            self._full.pause()

    def _slow_down(self) -> None:
        if self._full is None or self.slowed or self.paused:
            return
        self.slowed = True
        self._full.pause()
        if self._slow is None:
            self._slow = self._set_interval(1 / LIVE_IDLE_RATE, self._frame, name="frame-slow")
        else:
            self._slow.resume()

    def wake(self) -> None:
        """Frames at the full rate again."""
        self._quiet = 0
        if self._full is None or not (self.paused or self.slowed):
            return
        if self._slow is not None and self.slowed:
            self._slow.pause()
        self.paused = self.slowed = False
        self._full.resume()

    @property
    def idle(self) -> bool:
        """Frames paused or slowed: a change has to wake them."""
        return self.paused or self.slowed
