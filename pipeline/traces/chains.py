"""The analyzer's findings as pydantic models (``TraceAnalysis`` and its parts), and the recovery chains: built per
episode (``_Chain``) and kept in a ``ChainStore`` (columns, ~100 bytes a chain).
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import Any, Literal, overload

import orjson
from pydantic import BaseModel

from pipeline.traces.reader import (
    BadLine,
)
from pipeline.traces.records import (
    TraceRecord,
)


class ChainSummary(BaseModel):
    """One recovery chain. ``attempts`` counts the ticks after the failure that retried it (the last of which
    recovered or died); ``ticks`` lists the failure, the attempts and the closing tick."""

    chain_id: str
    episode: str
    start_tick: int
    end_tick: int
    failure_class: str | None
    attempts: int
    outcome: Literal["recovered", "death", "open"]
    ticks_to_recover: int | None
    seconds_to_recover: float | None
    mechanism: str | None
    ticks: list[int]


_CHAIN_FIELDS = set(ChainSummary.model_fields)


class ThrashEvent(BaseModel):
    """``action`` (a verb) failed ``count`` times with ``error_class`` before it succeeded again."""

    episode: str
    start_tick: int
    end_tick: int
    action: str
    error_class: str | None
    count: int


class Oscillation(BaseModel):
    """Two exact actions (readable labels in ``actions``) alternated from ``start_tick`` to ``end_tick``."""

    episode: str
    start_tick: int
    end_tick: int
    actions: list[str]


class Deadlock(BaseModel):
    """No progress over a window of ticks, or the same precondition error repeated (``reason`` says which)."""

    episode: str
    start_tick: int
    end_tick: int
    reason: str


class DeathTrace(BaseModel):
    """An episode that died: the tick it died on, why, and the numbers of its last ticks (to pull the raw
    records of the death from the trace)."""

    episode: str
    tick: int | None
    reason: str | None
    error_class: str | None
    last_ticks: list[int]


class ContextProfile(BaseModel):
    """Context size per tick. ``growth_per_tick`` is the within-episode slope after each episode's warm-up, the
    definition the eval report uses too (``pipeline.traces.growth``; 0.0 when undefined); ``early_mean``/``late_mean``
    are the mean sizes in the first and last quarter of the tick range. ``bounded`` is the O(1) verdict and fails
    closed: no samples, or fewer than ``BOUND_MIN_SPAN`` ticks of range, is not evidence of a bound."""

    max_chars: int
    mean_chars: float
    growth_per_tick: float
    early_mean: float
    late_mean: float
    bounded: bool
    samples: int


class TraceAnalysis(BaseModel):
    """Everything found in one trace file; ``sha256`` binds the findings to the exact bytes analyzed."""

    file: str
    sha256: str
    records: int
    bad_lines: list[BadLine]
    episodes: int
    ticks: int
    chains: list[ChainSummary]
    thrash: list[ThrashEvent]
    oscillations: list[Oscillation]
    deadlocks: list[Deadlock]
    deaths: list[DeathTrace]
    traps: dict[str, int]
    error_classes: dict[str, int]
    mttr_ticks: float | None
    mttr_seconds: float | None
    context: ContextProfile


class _Chain:
    __slots__ = (
        "chain_id",
        "closed",
        "end_estimated",
        "end_ts",
        "episode",
        "failure_class",
        "mechanism",
        "outcome",
        "start_estimated",
        "start_ts",
        "ticks",
    )

    def __init__(self, chain_id: str, episode: str, tick: int, obj: TraceRecord, failure_class: str | None):
        self.chain_id = chain_id
        self.episode = episode
        self.ticks = [tick]
        # interned: a handful of distinct class names, referenced by every chain for the life of the analysis
        self.failure_class = sys.intern(failure_class) if failure_class is not None else None
        self.outcome: Literal["recovered", "death", "open"] = "open"
        self.mechanism: str | None = None
        self.start_ts = float(obj.ts)
        self.start_estimated = obj.ts_estimated is True
        self.end_ts = self.start_ts
        self.end_estimated = self.start_estimated
        self.closed = False

    def add(self, tick: int, obj: TraceRecord) -> None:
        self.ticks.append(tick)
        self.end_ts = float(obj.ts)
        self.end_estimated = obj.ts_estimated is True
        recovery = obj.recovery
        if isinstance(recovery, str) and recovery:
            self.mechanism = sys.intern(recovery)

    def close(self, outcome: Literal["recovered", "death", "open"]) -> None:
        self.outcome = outcome
        self.closed = True


_OUTCOME_CODES: dict[str, int] = {"recovered": 0, "death": 1, "open": 2}
_OUTCOMES: tuple[Literal["recovered", "death", "open"], ...] = ("recovered", "death", "open")


class ChainStore(Sequence[ChainSummary]):
    """Closed recovery chains in columns, each ``ChainSummary`` built only when asked for.

    A large trace holds a chain every few dozen ticks (170,000 in 1 GB); as pydantic objects with their tick lists
    they took over 100 MB, here about 100 bytes each (the chain id string, a few pointers to shared strings, the
    tick numbers in one ``array('q')``). Totals for the report (outcomes, MTTR) are kept as chains come in.
    """

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.episodes: list[str] = []
        self.failure_classes: list[str | None] = []
        self.mechanisms: list[str | None] = []
        self.outcomes = array("b")
        self.seconds = array("d")
        self.tick_ends = array("q")
        self.ticks = array("q")
        self.by_outcome = [0, 0, 0]
        self.recover_ticks = 0
        self.recover_ticks_n = 0
        self.recover_seconds = 0.0
        self.recover_seconds_n = 0

    def add(self, chain: _Chain) -> None:
        outcome = _OUTCOME_CODES[chain.outcome]
        self.ids.append(chain.chain_id)
        self.episodes.append(chain.episode)
        self.failure_classes.append(chain.failure_class)
        self.mechanisms.append(chain.mechanism)
        self.outcomes.append(outcome)
        self.ticks.extend(chain.ticks)
        self.tick_ends.append(len(self.ticks))
        self.by_outcome[outcome] += 1
        seconds = math.nan
        if outcome == 0:
            self.recover_ticks += chain.ticks[-1] - chain.ticks[0]
            self.recover_ticks_n += 1
            if not (chain.start_estimated or chain.end_estimated):
                seconds = round(chain.end_ts - chain.start_ts, 6)
                self.recover_seconds += seconds
                self.recover_seconds_n += 1
        self.seconds.append(seconds)

    def extend(self, other: ChainStore) -> None:
        """Append the chains of ``other`` as if each were ``add``-ed here in turn (its seconds to recover summed
        one by one, so the total is the same float as one store's)."""
        base = len(self.ticks)
        self.ids.extend(other.ids)
        self.episodes.extend(other.episodes)
        self.failure_classes.extend(other.failure_classes)
        self.mechanisms.extend(other.mechanisms)
        self.outcomes.extend(other.outcomes)
        self.seconds.extend(other.seconds)
        self.ticks.extend(other.ticks)
        self.tick_ends.extend(array("q", [end + base for end in other.tick_ends]))
        self.by_outcome = [a + b for a, b in zip(self.by_outcome, other.by_outcome, strict=True)]
        self.recover_ticks += other.recover_ticks
        self.recover_ticks_n += other.recover_ticks_n
        total = self.recover_seconds
        for seconds in other.seconds:
            if not math.isnan(seconds):
                total += seconds
        self.recover_seconds = total
        self.recover_seconds_n += other.recover_seconds_n

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as a few objects, not several per chain: the chain ids joined with their lengths, the episodes,
        failure classes and mechanisms as their distinct values and an index per chain. ``trace stats``' second
        process sends its half's chains so: a pickler keeps every object it wrote in its memo (~300,000 for the
        chains of half a GB), at the peak of the two processes' memory. Unpickled, the same store (ids equal,
        repeated values shared)."""
        state = dict(vars(self))
        ids = state.pop("ids")
        packed = (
            "".join(ids),
            _narrowest([len(chain_id) for chain_id in ids]),
            *(_distinct(state.pop(name)) for name in _SHARED_COLUMNS),
        )
        return (_chain_store, (packed, state))

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> ChainSummary: ...

    @overload
    def __getitem__(self, i: slice) -> list[ChainSummary]: ...

    def __getitem__(self, i: int | slice) -> ChainSummary | list[ChainSummary]:
        if isinstance(i, slice):
            return [self._summary(j) for j in range(*i.indices(len(self.ids)))]
        if i < 0:
            i += len(self.ids)
        if not 0 <= i < len(self.ids):
            raise IndexError(i)
        return self._summary(i)

    def __iter__(self) -> Iterator[ChainSummary]:
        for i in range(len(self.ids)):
            yield self._summary(i)

    def _summary(self, i: int) -> ChainSummary:
        # Built without re-validation and with one shared fields-set (see ``_Chain``).
        return ChainSummary.model_construct(_CHAIN_FIELDS, **self._fields(i))

    def json_items(self) -> Iterator[bytes]:
        """Each chain as a JSON object (the fields of ``ChainSummary``), without building the model."""
        dumps = orjson.dumps
        for i in range(len(self.ids)):
            yield dumps(self._fields(i))

    def _fields(self, i: int) -> dict[str, Any]:
        """The fields of ``ChainSummary`` for chain ``i``."""
        ticks = self.ticks[self.tick_ends[i - 1] if i else 0 : self.tick_ends[i]].tolist()
        outcome = _OUTCOMES[self.outcomes[i]]
        seconds = self.seconds[i]
        return {
            "chain_id": self.ids[i],
            "episode": self.episodes[i],
            "start_tick": ticks[0],
            "end_tick": ticks[-1],
            "failure_class": self.failure_classes[i],
            "attempts": len(ticks) - 1,
            "outcome": outcome,
            "ticks_to_recover": ticks[-1] - ticks[0] if outcome == "recovered" else None,
            "seconds_to_recover": None if math.isnan(seconds) else seconds,
            "mechanism": self.mechanisms[i],
            "ticks": ticks,
        }


_SHARED_COLUMNS = ("episodes", "failure_classes", "mechanisms")
"""``ChainStore``'s columns of values that repeat (pickled as distinct values and an index per chain)."""


def _narrowest(numbers: list[int]) -> array[int]:
    """``numbers`` (not negative) in the narrowest unsigned array that holds them."""
    top = max(numbers, default=0)
    return array(next(code for code in "BHIQ" if top < 1 << (8 * array(code).itemsize)), numbers)


def _distinct(values: list[Any]) -> tuple[list[Any], array[int]]:
    """``values`` as its distinct values (in order of first appearance) and the index of each value among them."""
    numbers: dict[Any, int] = {}
    index = [numbers.setdefault(value, len(numbers)) for value in values]
    return list(numbers), _narrowest(index)


def _chain_store(packed: tuple[Any, ...], state: dict[str, Any]) -> ChainStore:
    """A ``ChainStore`` from what its ``__reduce__`` gave."""
    joined, lengths, *shared = packed
    store = ChainStore.__new__(ChainStore)
    vars(store).update(state)
    ids: list[str] = []
    at = 0
    for length in lengths:
        ids.append(joined[at : at + length])
        at += length
    store.ids = ids
    for name, (distinct, index) in zip(_SHARED_COLUMNS, shared, strict=True):
        setattr(store, name, [distinct[i] for i in index])
    return store
