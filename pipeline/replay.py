"""Time travel through a session: its journal as a timeline, and the session state as it was after any event.

Nothing is re-run: the state at position ``i`` is the journal's first ``i + 1`` events replayed (``SessionState``),
with snapshots every ``CHECKPOINT_EVERY`` events so that scrubbing back and forth stays cheap on long journals.
Marks let an operator jump to what matters: failures, gates, stage starts and death ticks. The files the journal
names (step outputs, gate evidence) are hash-checked against what it recorded: a file changed since is reported as
changed, never shown as if it were the original.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.clock import unix_seconds
from pipeline.hashing import MISSING, path_sha256
from pipeline.journal import Event, JournalProblem
from pipeline.state import SessionState

CHECKPOINT_EVERY = 256
MarkKind = Literal["failure", "gate", "stage", "death"]
MARK_KINDS: tuple[MarkKind, ...] = ("failure", "gate", "stage", "death")
FAILURE_EVENTS = frozenset({"step_failed", "step_blocked", "gate_timed_out", "service_failed", "step_cancelled"})
GATE_EVENTS = frozenset({"gate_opened", "gate_decided", "gate_timed_out", "gate_refused"})


def event_time(ev: Event) -> float | None:
    return unix_seconds(ev.ts)


def mark_kinds(ev: Event, previous_deaths: dict[str, int], started_stages: set[str]) -> list[MarkKind]:
    """What an event is a landmark of (updates the running death counts and the stages seen started)."""
    kinds: list[MarkKind] = []
    if ev.type in FAILURE_EVENTS:
        kinds.append("failure")
    if ev.type == "run_finished" and ev.payload.get("state") in ("failed", "cancelled"):
        kinds.append("failure")
    if ev.type in GATE_EVENTS:
        kinds.append("gate")
    if ev.type in ("step_started", "gate_opened") and ev.stage and ev.stage not in started_stages:
        started_stages.add(ev.stage)
        kinds.append("stage")
    if ev.type == "session_started":
        started_stages.clear()  # a resumed run starts its stages again
    if ev.type == "step_progress":
        p = ev.payload
        key = f"{ev.key}#{ev.attempt}"
        deaths = p.get("deaths")
        died = p.get("outcome") == "death"
        if isinstance(deaths, int) and not isinstance(deaths, bool):
            died = died or deaths > previous_deaths.get(key, 0)
            previous_deaths[key] = deaths
        if died:
            kinds.append("death")
    return kinds


@dataclass(frozen=True)
class ChangedFile:
    """A file the journal recorded a hash of, whose content is not that any more."""

    owner: str
    """The step or gate that recorded it."""
    path: str
    recorded: str
    current: str


class Timeline:
    """The events of a journal, their times and landmarks, and the state after any of them."""

    def __init__(self, session: str, session_dir: Path | None = None) -> None:
        self.session = session
        self.session_dir = session_dir
        self.events: list[Event] = []
        self.times: list[float] = []
        self.problems: list[str] = []
        self.marks: dict[MarkKind, list[int]] = {k: [] for k in MARK_KINDS}
        self._deaths: dict[str, int] = {}
        self._stages: set[str] = set()
        self._checkpoints: list[SessionState] = []
        self._cursor_state: tuple[int, SessionState] | None = None
        self._hashes: dict[Path, str] = {}
        """Current hashes of the files checked so far (hashed once per timeline: folders can be large)."""

    def extend(self, items: Iterable[Event | JournalProblem]) -> int:
        """Add events read from the journal (problems are kept as text); the number of events added."""
        added = 0
        for item in items:
            if not isinstance(item, Event):
                self.problems.append(str(item))
                continue
            index = len(self.events)
            self.events.append(item)
            t = event_time(item)
            self.times.append(t if t is not None else (self.times[-1] if self.times else 0.0))
            for kind in mark_kinds(item, self._deaths, self._stages):
                self.marks[kind].append(index)
            added += 1
        return added

    def __len__(self) -> int:
        return len(self.events)

    # -- state at a position --------------------------------------------------------------------------------------
    def state_at(self, index: int) -> SessionState:
        """The session as it was right after event ``index`` (a fresh object; callers may keep it)."""
        if not self.events:
            return SessionState(session=self.session)
        index = max(0, min(index, len(self.events) - 1))
        cached = self._cursor_state
        if cached is not None and cached[0] <= index and index - cached[0] < CHECKPOINT_EVERY:
            start, state = cached[0] + 1, cached[1].model_copy(deep=True)
        else:
            slot = min(index // CHECKPOINT_EVERY, len(self._checkpoints))
            self._fill_checkpoints(slot)
            if slot == 0:
                start, state = 0, SessionState(session=self.session)
            else:
                start, state = slot * CHECKPOINT_EVERY, self._checkpoints[slot - 1].model_copy(deep=True)
        for ev in self.events[start : index + 1]:
            state.apply(ev)
        state.problems = list(self.problems)
        self._cursor_state = (index, state)  # (the next call copies it before applying more events)
        return state

    def _fill_checkpoints(self, upto: int) -> None:
        """Checkpoint ``k`` (1-based) is the state after the first ``k * CHECKPOINT_EVERY`` events."""
        while len(self._checkpoints) < upto and (len(self._checkpoints) + 1) * CHECKPOINT_EVERY <= len(self.events):
            k = len(self._checkpoints)
            state = self._checkpoints[k - 1].model_copy(deep=True) if k else SessionState(session=self.session)
            for ev in self.events[k * CHECKPOINT_EVERY : (k + 1) * CHECKPOINT_EVERY]:
                state.apply(ev)
            self._checkpoints.append(state)

    # -- navigation -------------------------------------------------------------------------------------------------
    def next_mark(self, index: int, kinds: Sequence[MarkKind], forward: bool) -> int | None:
        """The nearest landmark of one of ``kinds`` after (or before) ``index``; None when there is none."""
        found: list[int] = []
        for kind in kinds:
            marks = self.marks[kind]
            pos = bisect_right(marks, index)
            if forward and pos < len(marks):
                found.append(marks[pos])
            elif not forward:
                before = bisect_right(marks, index - 1)
                if before > 0:
                    found.append(marks[before - 1])
        if not found:
            return None
        return min(found) if forward else max(found)

    def index_at_time(self, t: float) -> int:
        """The last event at or before time ``t`` (the first event when ``t`` is earlier than all)."""
        return max(0, bisect_right(self.times, t) - 1)

    # -- files the journal names ----------------------------------------------------------------------------------
    def changed_files(self, state: SessionState) -> list[ChangedFile]:
        """Step outputs and gate evidence recorded up to ``state`` whose files no longer hash the same."""
        return self.changed_among(recorded_files(state))

    def changed_among(self, recorded: Sequence[tuple[str, str, str]]) -> list[ChangedFile]:
        """Of ``(owner, path, recorded sha256)`` (``recorded_files``), those whose files no longer hash the same."""
        root = self.session_dir
        if root is None:
            return []
        out: list[ChangedFile] = []
        seen = self._hashes
        for owner, name, digest in recorded:
            if name.startswith("audit:") or digest == MISSING:
                continue
            path = Path(name) if Path(name).is_absolute() else root / name
            if path not in seen:
                seen[path] = path_sha256(path)
            if seen[path] != digest:
                out.append(ChangedFile(owner, name, digest, seen[path]))
        return out


def recorded_files(state: SessionState) -> list[tuple[str, str, str]]:
    """``(owner, path, sha256)`` of every step output and gate evidence the journal recorded up to ``state`` (cheap:
    taken while the state is held, hashed later)."""
    out: list[tuple[str, str, str]] = []
    for st in state.steps.values():
        if st.state in ("succeeded", "skipped"):
            out.extend((st.key, name, digest) for name, digest in st.outputs.items())
    for gate in state.gates.values():
        out.extend((gate.id, name, digest) for name, digest in gate.evidence.items())
    return out
