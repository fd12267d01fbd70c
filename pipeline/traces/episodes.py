"""The episodes of the streaming analysis: the state of each open episode (``EpisodeState``) and ``Episodes``, which
opens and closes them and turns what their ticks did into findings (chains, thrash, oscillations, deadlocks,
deaths, error classes, traps).

The per-tick update itself is the record loop of ``TraceAnalyzer`` (``pipeline.traces.analyzer``); it calls the
transitions here for the rare events: a failure, a success while failures are open, a chain mark, the end of a
stretch without progress or of an oscillation, an episode's end.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any, Literal, TypeVar

from pipeline.traces.chains import ChainStore, Deadlock, DeathTrace, Oscillation, ThrashEvent, _Chain
from pipeline.traces.growth import GrowthFit
from pipeline.traces.records import TraceRecord
from pipeline.traces.verbs import (
    DEATH_OUTCOMES,
    INVALID_VERB,
    LAST_TICKS,
    OSCILLATION_MIN,
    PRECONDITION_CLASSES,
    _error_message,
    _label,
    _tool_name,
    action_verb,
)

VERB_CACHE = 4096
_NO_VERB = object()
K = TypeVar("K")  # what runs of failures of one verb are told apart by: an error class, or it and the message


class _Run:
    """A stretch of repeated failures (thrash or repeated precondition error) not yet ended."""

    __slots__ = ("count", "end", "start")

    def __init__(self, tick: int) -> None:
        self.start = tick
        self.end = tick
        self.count = 1


class EpisodeState:
    """One open episode of one run (``key`` is ``(run_id, episode)``, ``name`` the episode)."""

    __slots__ = (
        "derived",
        "derived_seq",
        "died_at",
        "done_derived",
        "done_marked",
        "has_marks",
        "key",
        "last_error_class",
        "last_ticks",
        "marked",
        "name",
        "noprogress_len",
        "noprogress_start",
        "open_tools",
        "osc_len",
        "osc_pair",
        "osc_start",
        "prev2_action",
        "prev_action",
        "prev_tick",
        "repeats",
        "seen_observations",
        "thrash",
    )

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.name = key[1]
        self.derived: dict[str, _Chain] = {}
        self.derived_seq = 0
        self.done_derived: list[_Chain] = []
        self.marked: dict[str, _Chain] = {}
        self.done_marked: list[_Chain] = []
        self.has_marks = False
        self.open_tools: set[str] = set()
        self.thrash: dict[str, dict[str, _Run]] = {}
        self.repeats: dict[str, dict[tuple[str, str], _Run]] = {}
        self.noprogress_start = 0
        self.noprogress_len = 0
        self.prev2_action: dict[str, Any] | None = None
        self.prev_tick = -1
        self.osc_start = 0
        self.osc_len = 0
        self.osc_pair: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)
        self.prev_action: dict[str, Any] | None = None
        self.last_ticks: deque[int] = deque(maxlen=LAST_TICKS)
        self.died_at: int | None = None
        self.last_error_class: str | None = None
        self.seen_observations: set[int] | None = None

    def novel_observation(self, rec: TraceRecord) -> bool:
        """Progress for records that do not say: a successful tick that showed something not seen before."""
        if self.seen_observations is None:
            self.seen_observations = set()
        observation = rec.observation
        digest = hash(observation) if isinstance(observation, str) else 0
        if digest in self.seen_observations:
            return False
        self.seen_observations.add(digest)
        return True


class Episodes:
    """The open episodes by ``(run_id, episode)`` and the findings of those that closed.

    ``growth`` is the context-growth fit, which is per episode too: an episode's fit starts and closes with it.
    """

    def __init__(self, growth: GrowthFit, deadlock_window: int, thrash_min: int) -> None:
        self.growth = growth
        self.deadlock_window = deadlock_window
        self.thrash_min = thrash_min
        self.open: dict[tuple[str, str], EpisodeState] = {}
        self.keys: set[tuple[str, str]] = set()
        self.chains = ChainStore()
        self.thrash: list[ThrashEvent] = []
        self.oscillations: list[Oscillation] = []
        self.deadlocks: list[Deadlock] = []
        self.deaths: list[DeathTrace] = []
        self.traps: dict[str, int] = {}
        self.error_classes: dict[str, int] = {}
        self._verbs: dict[tuple[tuple[str, Any], ...], str | object | None] = {}

    # ---- open and close ------------------------------------------------------------------------------------------

    def state(self, key: tuple[str, str]) -> EpisodeState:
        """The open episode ``key``; a tick of an episode that was not started opens it."""
        st = self.open.get(key)
        if st is None:
            self.keys.add(key)
            st = self.open[key] = EpisodeState(key)
        return st

    def start(self, key: tuple[str, str], context_window: Any) -> None:
        """An ``episode_start``: a previous episode of the same key ends without an end record."""
        previous = self.open.pop(key, None)
        if previous is not None:
            self.close(previous, None)
        self.state(key)
        self.growth.start(key, context_window)

    def end(self, key: tuple[str, str], end: TraceRecord) -> None:
        """An ``episode_end`` (of an episode that had no other record, too: it still counts as one)."""
        ending = self.open.pop(key, None)
        if ending is None:
            self.keys.add(key)
            ending = EpisodeState(key)
        self.close(ending, end)

    def close_all(self) -> None:
        for st in list(self.open.values()):
            self.close(st, None)
        self.open.clear()

    def close(self, st: EpisodeState, end: TraceRecord | None) -> None:
        """Episode ``st`` is over (``end`` is its end record, if it had one): what it left open becomes findings."""
        self.growth.close(st.key)
        episode_outcome = end.outcome if end is not None else None
        died = st.died_at is not None or episode_outcome in DEATH_OUTCOMES
        open_outcome: Literal["death", "open"] = "death" if died else "open"
        for chain in st.derived.values():
            chain.close(open_outcome)
            st.done_derived.append(chain)
        for chain in st.marked.values():
            chain.close(open_outcome)
            st.done_marked.append(chain)
        chosen = st.done_marked if st.done_marked else st.done_derived
        chosen.sort(key=lambda c: c.ticks[0])
        add_chain = self.chains.add
        for chain in chosen:
            add_chain(chain)
        for verb in list(st.thrash) + list(st.repeats):
            self._end_runs(st, verb)
        if st.noprogress_len:
            self.end_noprogress(st)
        self.end_oscillation(st)
        if died:
            reason = end.reason if end is not None else None
            error_class = end.error_class if end is not None else None
            if not isinstance(error_class, str):
                error_class = st.last_error_class
            if not isinstance(reason, str):
                reason = f"episode outcome {episode_outcome}" if episode_outcome else "a tick ended in death"
            self.deaths.append(
                DeathTrace(
                    episode=st.name,
                    tick=st.died_at if st.died_at is not None else (st.last_ticks[-1] if st.last_ticks else None),
                    reason=reason,
                    error_class=error_class,
                    last_ticks=list(st.last_ticks),
                )
            )

    # ---- transitions of a tick -----------------------------------------------------------------------------------

    def end_noprogress(self, st: EpisodeState) -> None:
        if st.noprogress_len >= self.deadlock_window:
            self.deadlocks.append(
                Deadlock(
                    episode=st.name,
                    start_tick=st.noprogress_start,
                    end_tick=st.prev_tick if st.prev_tick >= st.noprogress_start else st.noprogress_start,
                    reason=f"no progress for {st.noprogress_len} ticks",
                )
            )
        st.noprogress_len = 0

    def end_oscillation(self, st: EpisodeState) -> None:
        if st.osc_len >= OSCILLATION_MIN and st.prev_tick >= st.osc_start:
            self.oscillations.append(
                Oscillation(
                    episode=st.name,
                    start_tick=st.osc_start,
                    end_tick=st.prev_tick,
                    actions=[_label(action) for action in st.osc_pair if action is not None],
                )
            )
        st.osc_len = 0

    def marked_chain(self, st: EpisodeState, chain_id: str, t: int, rec: TraceRecord) -> None:
        """Tick ``t`` carries the chain mark ``chain_id``: it opens, extends or closes that chain."""
        if not st.has_marks:
            # The trace marks its own chains: derived ones are no longer needed for this episode.
            st.has_marks = True
            st.derived.clear()
            st.done_derived.clear()
        role = rec.chain_role
        chain = st.marked.get(chain_id)
        if chain is None:
            error_class = rec.error_class
            chain = _Chain(chain_id, st.name, t, rec, error_class if isinstance(error_class, str) else None)
            recovery = rec.recovery
            if isinstance(recovery, str) and recovery:
                chain.mechanism = sys.intern(recovery)
            st.marked[chain_id] = chain
        elif not chain.closed:
            chain.add(t, rec)
        else:
            return
        if role == "recovered" or role == "death":
            chain.close(role)
            st.done_marked.append(st.marked.pop(chain_id))

    def failed_tick(
        self, st: EpisodeState, t: int, rec: TraceRecord, action: dict[str, Any] | None, outcome: str
    ) -> None:
        error_class = rec.error_class
        if not isinstance(error_class, str) or not error_class:
            error_class = "Timeout" if outcome == "timeout" else ("Fatal" if outcome == "death" else "Error")
        error_classes = self.error_classes
        error_classes[error_class] = error_classes.get(error_class, 0) + 1
        st.last_error_class = error_class
        verb = self.verb(action) or INVALID_VERB
        st.open_tools.add(verb.split(":", 1)[0])
        if not st.has_marks:
            chain = st.derived.get(verb)
            if chain is None:
                st.derived_seq += 1
                st.derived[verb] = _Chain(f"{st.name}:auto-{st.derived_seq}", st.name, t, rec, error_class)
            else:
                chain.add(t, rec)
        # One more failure of ``verb`` with this error class (``_extend_run``, inline: most ticks that fail pass here).
        runs = st.thrash.get(verb)
        if runs is None:
            st.thrash[verb] = {error_class: _Run(t)}
        else:
            run = runs.get(error_class)
            if run is None:
                runs[error_class] = _Run(t)
            else:
                run.end = t
                run.count += 1
        if error_class in PRECONDITION_CLASSES:
            _extend_run(st.repeats, verb, (error_class, _error_message(rec)), t)
        if outcome == "death" or rec.chain_role == "death":
            st.died_at = t

    def succeeded_tick(self, st: EpisodeState, t: int, rec: TraceRecord, action: dict[str, Any]) -> None:
        """A successful tick while some tool has failures open: the failures of its verb are over."""
        open_tools = st.open_tools
        tool = _tool_name(action) or "?"
        if tool not in open_tools and INVALID_VERB not in open_tools:
            return
        verb = self.verb(action)
        if verb is None:
            return
        derived = st.derived
        if derived:
            for key in (verb, INVALID_VERB):
                chain = derived.pop(key, None)
                if chain is not None:
                    chain.add(t, rec)
                    chain.close("recovered")
                    st.done_derived.append(chain)
        self._end_runs(st, verb)
        st.open_tools = {v.split(":", 1)[0] for v in (*derived, *st.thrash, *st.repeats)}

    def _end_runs(self, st: EpisodeState, verb: str) -> None:
        """``verb`` succeeded (or the episode ended): its runs of failures long enough are thrash or deadlocks."""
        thrash = st.thrash
        repeats = st.repeats
        minimum = self.thrash_min
        for key in (verb, INVALID_VERB):
            runs = thrash.pop(key, None)
            if runs:
                for error_class, run in runs.items():
                    if run.count >= minimum:
                        self.thrash.append(
                            ThrashEvent(
                                episode=st.name,
                                start_tick=run.start,
                                end_tick=run.end,
                                action=key,
                                error_class=error_class,
                                count=run.count,
                            )
                        )
            repeated = repeats.pop(key, None)
            if repeated:
                for (error_class, message), run in repeated.items():
                    if run.count >= minimum:
                        self.deadlocks.append(
                            Deadlock(
                                episode=st.name,
                                start_tick=run.start,
                                end_tick=run.end,
                                reason=f"same {error_class} repeated {run.count} times on {key}: {message}",
                            )
                        )

    def verb(self, action: dict[str, Any] | None) -> str | None:
        """``action_verb(action)``, remembered for actions of hashable values (most are a tool name and a string).

        Exact: the verb reads only string values (and dicts, whose actions are not remembered), so actions whose
        items compare equal (``1 == 1.0 == True`` included) have the same verb. At most ``VERB_CACHE`` entries.
        """
        if action is None:
            return None
        try:
            key = tuple(action.items())
            verb = self._verbs.get(key, _NO_VERB)
        except TypeError:  # a list or dict among the values
            return action_verb(action)
        if verb is _NO_VERB:
            verb = action_verb(action)
            if len(self._verbs) >= VERB_CACHE:
                self._verbs.clear()
            self._verbs[key] = verb
        return verb  # type: ignore[return-value]


def _extend_run(runs_by_verb: dict[str, dict[K, _Run]], verb: str, key: K, t: int) -> None:
    """One more failure of ``verb`` under ``key`` (an error class, or an error class and message) at tick ``t``."""
    runs = runs_by_verb.get(verb)
    if runs is None:
        runs = runs_by_verb[verb] = {}
    run = runs.get(key)
    if run is None:
        runs[key] = _Run(t)
    else:
        run.end = t
        run.count += 1
