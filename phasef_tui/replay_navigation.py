"""Moving through a replay's timeline: by event, by landmark of a kind, to a time, playing at 1x/10x/100x the
recorded pace, and back to live. ``ReplaySource`` gives the timeline, the position and ``move_to``."""

from __future__ import annotations

import threading
import time

from phasef_tui.replay_past import jump_target
from pipeline.replay import MARK_KINDS, MarkKind, Timeline

SPEEDS = (1.0, 10.0, 100.0)
KIND_CYCLE: tuple[str, ...] = ("any", *MARK_KINDS)


class TimelineNavigation:
    """The replay keys' moves over ``timeline``; a ``SessionSource`` subclass mixes it in."""

    timeline: Timeline
    position: int
    following: bool
    mark_kind: str
    playing: bool
    speed: float
    version: int
    lock: threading.Lock
    _lazy: bool
    _play_origin: tuple[float, float]

    def move_to(self, index: int, *, follow: bool = False) -> None:
        raise NotImplementedError

    def _ensure_timeline(self) -> None:
        raise NotImplementedError

    def describe_position(self) -> str:
        raise NotImplementedError

    # -- navigation ------------------------------------------------------------------------------------------------
    def step(self, delta: int) -> None:
        self._ensure_timeline()
        self.playing = False
        self.move_to(self.position + delta)

    def jump(self, forward: bool) -> bool:
        """To the next (previous) landmark of the chosen kind; False when there is none that way."""
        self._ensure_timeline()
        kinds: tuple[MarkKind, ...] = MARK_KINDS if self.mark_kind == "any" else (self.mark_kind,)  # type: ignore[assignment]
        with self.lock:
            target = self.timeline.next_mark(self.position, kinds, forward)
        if target is None:
            return False
        self.playing = False
        self.move_to(target)
        return True

    def cycle_kind(self) -> str:
        self.mark_kind = KIND_CYCLE[(KIND_CYCLE.index(self.mark_kind) + 1) % len(KIND_CYCLE)]
        with self.lock:
            self.version += 1
        return self.mark_kind

    def jump_to_time(self, text: str) -> str:
        """``HH:MM[:SS]`` (UTC, the session's day), an ISO time, or ``+N``/``-N`` seconds from here; the event
        landed on, or ``ValueError`` with what was wrong."""
        self._ensure_timeline()
        with self.lock:
            if not self.timeline.events:
                raise ValueError("the journal is empty")
            here = self.timeline.times[self.position]
        target = jump_target(text, here)
        self.playing = False
        self.move_to(self.timeline.index_at_time(target))
        return self.describe_position()

    def toggle_play(self) -> bool:
        self._ensure_timeline()
        self.playing = not self.playing
        if self.playing:
            if self.position >= len(self.timeline) - 1:
                self.move_to(0)
            self._play_origin = (time.monotonic(), self.timeline.times[self.position] if self.timeline.times else 0.0)
        with self.lock:
            self.version += 1
        return self.playing

    def cycle_speed(self) -> float:
        self.speed = SPEEDS[(SPEEDS.index(self.speed) + 1) % len(SPEEDS)] if self.speed in SPEEDS else SPEEDS[0]
        if self.playing and self.timeline.times:
            self._play_origin = (time.monotonic(), self.timeline.times[self.position])
        with self.lock:
            self.version += 1
        return self.speed

    def live(self) -> None:
        """Back to the newest event, following what the supervisor appends."""
        self.playing = False
        if self._lazy:
            return  # (live already)
        self.move_to(len(self.timeline) - 1, follow=True)

    def _advance_play(self) -> None:
        if not self.playing or not self.timeline.times:
            return
        wall0, t0 = self._play_origin
        target = self.timeline.index_at_time(t0 + (time.monotonic() - wall0) * self.speed)
        if target > self.position:
            self.move_to(target)
        if self.position >= len(self.timeline) - 1:
            self.playing = False
