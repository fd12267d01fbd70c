"""A session replayed (``phasef replay SESSION``): every screen shows the session as it was at one journal event.

The position moves by event, by landmark (failure, gate, stage start, death tick), to a time, or plays at 1x, 10x or
100x the recorded pace. On a running session the same source follows the live end until the operator scrubs back,
and ``live()`` returns to it. Nothing is re-run: the state comes from ``pipeline.replay.Timeline``; the log tail is
cut at the last line the step had written by then (its progress events name their log lines); files the journal
recorded hashes of are checked, and a changed one is reported as changed. Decisions and step actions are refused
while the view is in the past.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from phasef_tui.data_source import ApprovalError
from phasef_tui.replay_navigation import SPEEDS, TimelineNavigation
from phasef_tui.replay_past import ChangeCheck, PastTraces, log_tail_as_of
from phasef_tui.session_source import SessionSource
from phasef_tui.trace_feed import TraceFeed
from pipeline.journal import Event, JournalProblem, JournalTail
from pipeline.replay import ChangedFile, Timeline, recorded_files
from pipeline.state import SessionState
from widgets.session_view import SessionView


class ReplaySource(TimelineNavigation, SessionSource):
    """A ``SessionSource`` whose state is the journal replayed up to ``position``."""

    replaying = True

    def __init__(
        self, session_dir: Path, *, operator: str, follow: bool = False, attached: bool = False, **kw: object
    ) -> None:
        self.timeline = Timeline(Path(session_dir).name, Path(session_dir))
        self.position = 0
        self.following = follow
        self.attached = attached
        """``phasef attach``: the live view, with the replay keys to pause and scrub back; the timeline bar shows
        only while the view is in the past."""
        self.mark_kind = "any"
        self.playing = False
        self.speed = SPEEDS[0]
        self._play_origin: tuple[float, float] = (0.0, 0.0)
        self._changes = ChangeCheck(self.timeline, self._changes_checked)
        self._past = PastTraces(Path(session_dir))
        self._journal_ended = False
        self._state_owned = False
        """``state`` is this source's own object (built live), not one the timeline keeps as its cursor."""
        self._lazy = attached and follow
        """``phasef attach`` while live: the events are applied and not kept (as a plain attach); the timeline is
        read from the journal when a replay key is first pressed."""
        self._read_lock = threading.Lock()
        super().__init__(session_dir, operator=operator, **kw)  # type: ignore[arg-type]
        if not attached:
            self.title = f"replay {self.session_dir.name} · {operator}"

    # -- the journal -----------------------------------------------------------------------------------------------
    def read_journal(self) -> bool:
        with self._read_lock:  # (not while the timeline is being read: the tail is swapped then)
            return self._read_journal()

    def _read_journal(self) -> bool:
        if self._lazy:
            items = self._tail.poll()
            for item in items:
                if isinstance(item, Event) and item.type in ("session_started", "run_finished"):
                    self._journal_ended = item.type == "run_finished"
            return self._apply_live(items)
        items = self._tail.poll()
        if not items:
            return False
        with self.lock:
            before = len(self.timeline)
            added = self.timeline.extend(items)
            for item in items:  # (a resume starts the run again)
                if isinstance(item, Event) and item.type in ("session_started", "run_finished"):
                    self._journal_ended = item.type == "run_finished"
            if added and self.following:
                self._follow_tip(before, [item for item in items if isinstance(item, Event)])
            elif added and before == 0:  # the first read: show the first event
                self._set_state()
            self.version += 1
        return True

    def _apply_live(self, items: list[Event | JournalProblem]) -> bool:
        """(lazy) The events applied to the state, as ``SessionSource`` does."""
        self._state_owned = self._state_owned or bool(items)
        return self._apply(items)

    def _ensure_timeline(self) -> None:
        """(attach) The whole journal as a timeline, once: a replay key was pressed for the first time. The view
        stays at the newest event until the key moves it."""
        if not self._lazy:
            return
        with self._read_lock:
            if not self._lazy:
                return
            tail = JournalTail(self.journal_path)
            items = tail.poll()
            with self.lock:
                self.timeline.extend(items)
                self._tail = tail
                self._lazy = False
                self._state_owned = False
                self.position = max(0, len(self.timeline) - 1)
                self._set_state()
                self.version += 1

    def _follow_tip(self, before: int, new: list[Event]) -> None:
        """(lock held) Live: the new events applied to the state shown, as a plain attach does (no copy of the
        whole state per event, no checkpoints until the operator scrubs back)."""
        if not self._state_owned or self.position != before - 1:
            if before == 0:
                self.state = SessionState(session=self.timeline.session)
            elif self.position == before - 1:  # (back to live: the timeline keeps this object as its cursor)
                self.state = self.state.model_copy(deep=True)
            else:
                self.state = self.timeline.state_at(before - 1).model_copy(deep=True)
            self._state_owned = True
        for ev in new:
            self.state.apply(ev)
        self.state.problems = list(self.timeline.problems)
        self.position = len(self.timeline) - 1
        self._view_cache = None

    @property
    def finished(self) -> bool:
        """The journal says the session ended (whatever the position shown: nothing more will be appended)."""
        return self._journal_ended

    def settled(self) -> bool:
        """Nothing to redraw until a key is pressed: the journal has ended, nothing plays, the traces shown are
        indexed to their end."""
        if self.playing or not super().settled():
            return False
        with self._feeds_lock:
            return self._past.settled()

    def _set_state(self) -> None:
        """(lock held) The state at ``position``."""
        self.state = self.timeline.state_at(self.position)
        self._state_owned = False
        self._view_cache = None

    def move_to(self, index: int, *, follow: bool = False) -> None:
        self._ensure_timeline()
        with self.lock:
            last = max(0, len(self.timeline) - 1)
            self.position = max(0, min(index, last))
            self.following = follow
            self._set_state()
            self.version += 1

    def poll(self) -> set[str]:
        self._advance_play()
        return super().poll()

    @property
    def clocks_running(self) -> bool:
        """(in the past the clocks stand still at the event's time)"""
        return self.following and super().clocks_running

    def view_time(self, now: float) -> float:
        """In the past, the time of the event shown: a step running then shows how long it had run by then."""
        if self.following:
            return now
        with self.lock:
            return self.timeline.times[self.position] if self.timeline.times else now

    # -- what the timeline bar shows -------------------------------------------------------------------------------
    def describe_position(self) -> str:
        with self.lock:
            if not self.timeline.events:
                return "no events"
            ev = self.timeline.events[self.position]
        where = f" {ev.stage}.{ev.step}" if ev.stage else ""
        return f"#{ev.seq} {ev.ts[11:19]} {ev.type}{where}"

    @property
    def bar_shown(self) -> bool:
        """The timeline bar is on screen: always in ``phasef replay``; in ``phasef attach`` only in the past."""
        return not (self.attached and self.following)

    def timeline_info(self) -> dict[str, object]:
        with self.lock:
            n = len(self.timeline)
            marks = {k: list(v) for k, v in self.timeline.marks.items()}
            t = self.timeline.times
            position = self.position
        return {
            "position": position,
            "count": n,
            "following": self.following,
            "playing": self.playing,
            "speed": self.speed,
            "kind": self.mark_kind,
            "marks": marks,
            "span": (t[0], t[-1]) if t else None,
            "now": t[position] if t else None,
            "event": self.describe_position(),
            "changed": self.changed_files(),
        }

    def changed_files(self) -> list[ChangedFile] | None:
        """Files recorded up to here whose content changed since (the last answer, or None, while hashing). Not
        checked in ``phasef attach`` while live."""
        return self._changes.at(self.position, self._recorded) if self.bar_shown else None

    def _recorded(self) -> tuple[int, list[tuple[str, str, str]]]:
        with self.lock:  # (the files named, not the state: live, the reader thread goes on applying events to it)
            return self.position, recorded_files(self.state)

    def _changes_checked(self) -> None:
        with self.lock:
            self.version += 1
        self._wake()  # (the frames may have paused meanwhile)

    def _build_view(self) -> SessionView:
        """The comparison table only once a step had written it by this point (it is read from the report file);
        gate evidence whose file changed since the journal recorded its hash is marked so."""
        view = super()._build_view()
        done = self._changes.done  # (lock held: the last finished check, read as it is)
        if done is not None and done[0] == self.position and done[1]:
            changed = {(c.owner, c.path) for c in done[1]}
            gates = tuple(
                replace(g, evidence=tuple(replace(e, changed=(g.id, e.path) in changed) for e in g.evidence))
                for g in view.gates
            )
            view = replace(view, gates=gates)
        if view.deltas and not self.following:
            compared = any(
                st.state in ("succeeded", "skipped") and "comparison" in st.summary for st in self.state.steps.values()
            )
            if not compared:
                view = replace(view, deltas=(), residual_blockers=())
        return view

    # -- the traces as they were ---------------------------------------------------------------------------------
    def _feed_for(self, path: Path) -> TraceFeed:
        """In the past: a feed over the trace's records written by this point (records past it are not shown).
        Live: the trace itself."""
        if self.following:
            return super()._feed_for(path)
        with self.lock:
            now = self.timeline.times[self.position] if self.timeline.times else 0.0
        with self._feeds_lock:
            return self._past.feed(path, now)

    @property
    def _prefix_dir(self) -> Path | None:
        """The private folder of the traces' prefix copies (None before the first, and after ``stop``)."""
        return self._past.folder

    def stop(self) -> None:
        super().stop()
        self._past.stop()

    # -- the log as it was -----------------------------------------------------------------------------------------
    def log_tail(self, step_key: str | None) -> tuple[str, ...]:
        if step_key is None:
            return ()
        if self.following:
            return super().log_tail(step_key)
        with self.lock:
            st = self.state.steps.get(step_key)
            st = None if st is None else st.model_copy()
        return () if st is None else log_tail_as_of(self.session_dir, st)

    def log_tails(self, step_key: str | None) -> list[tuple[str | None, tuple[str, ...]]]:
        if self.following:
            return super().log_tails(step_key)
        return [(None, self.log_tail(step_key))]  # in the past: the step's own log as it was

    # -- no decisions in the past ----------------------------------------------------------------------------------
    def _live_only(self) -> None:
        if not self.following:
            raise ApprovalError("this view is in the past (replay): press F to return to live before acting")

    def approve(self, gate_id: str, decision: str, reason: str, *, override: bool = False) -> str:
        self._live_only()
        return super().approve(gate_id, decision, reason, override=override)

    def step_action(self, op: str, step: str, reason: str) -> str:
        self._live_only()
        return super().step_action(op, step, reason)
