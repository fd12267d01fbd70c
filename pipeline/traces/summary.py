"""The viewer's per-line summary of a trace: record kind, episode, tick, recovery chain, flags (death, recovery,
trap, schema error, thrash, deadlock, ...), context size and latency, in compact parallel arrays.

``_summarize_batch`` is the hot loop of the viewer (millions of lines). Lines are decoded with
the analyzer's decoder (``records.TraceRecord``); a line it does not take as a record of a known kind goes the exact
way (orjson), so bad lines stay what they were.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.traces.records import decode_fast_errors, fast_decoder, record_from_dict, valid_utf8
from pipeline.traces.verbs import (
    DEATH_OUTCOMES,
    DEFAULT_DEADLOCK_WINDOW,
    DEFAULT_THRASH_MIN,
    FAILING_TICK_OUTCOMES,
    INVALID_VERB,
    PRECONDITION_CLASSES,
    _tool_name,
    action_verb,
)

THRASH_MIN = DEFAULT_THRASH_MIN
DEADLOCK_WINDOW = DEFAULT_DEADLOCK_WINDOW


# Record kinds in the summary.
KIND_UNKNOWN = 0
KIND_EPISODE_START = 1
KIND_TICK = 2
KIND_EPISODE_END = 3
KIND_CODES = {"episode_start": KIND_EPISODE_START, "tick": KIND_TICK, "episode_end": KIND_EPISODE_END}

# Flags in the summary (a 16-bit mask).
FLAG_DEATH = 1 << 0
FLAG_RECOVERY = 1 << 1
FLAG_TRAP = 1 << 2
FLAG_SCHEMA_ERROR = 1 << 3
FLAG_THRASH = 1 << 4
FLAG_DEADLOCK = 1 << 5
FLAG_ERROR = 1 << 6
FLAG_BAD_LINE = 1 << 7
FLAG_PROGRESS = 1 << 8
FLAG_RECOVERED = 1 << 9
FLAG_FAILURE = 1 << 10

FILTER_FLAGS: dict[str, int] = {
    "death": FLAG_DEATH,
    "recovery": FLAG_RECOVERY,
    "trap": FLAG_TRAP,
    "schema_error": FLAG_SCHEMA_ERROR,
    "thrash": FLAG_THRASH,
    "deadlock": FLAG_DEADLOCK,
    "error": FLAG_ERROR,
    "bad_line": FLAG_BAD_LINE,
}
"""Filter names offered to viewers -> flag; every one has its own list of matching lines."""

_FILTER_MASK = 0
for _flag in FILTER_FLAGS.values():
    _FILTER_MASK |= _flag

NO_ID = -1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""The summary stores ticks and context sizes as 32-bit integers; values outside are not kept."""


@dataclass(frozen=True)
class LineSummary:
    """What the summary pass knows of one line without parsing it again."""

    line: int
    kind: int
    flags: int
    episode: str | None
    tick: int | None
    chain: str | None
    context_chars: int
    latency_s: float | None


class _Interner:
    """Strings (episode ids, chain keys) stored once, referred to by small integers in the summary arrays."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ids: dict[str, int] = {}

    def intern(self, name: str) -> int:
        found = self.ids.get(name)
        if found is None:
            found = len(self.names)
            self.ids[name] = found
            self.names.append(name)
        return found


NARROW = {"tick": "h", "context_chars": "H"}
"""Columns kept 16 bits wide while every value fits (ticks of an episode, context sizes up to 65,535 characters);
the first value that does not fit widens the column to 32 bits for good (``_widen``). Values read are the same."""
_NARROW_RANGE = {"h": (-(2**15), 2**15 - 1), "H": (0, 2**16 - 1)}
WIDE = "i"


def _widen(s: _Summaries, name: str) -> array[int]:
    """Column ``name`` as 32-bit integers from now on (a reader in another thread sees the old or the new one, both
    holding every line summarized so far)."""
    wide = array(WIDE, getattr(s, name))
    setattr(s, name, wide)
    return wide


def _extend_narrow(s: _Summaries, name: str, values: list[int]) -> None:
    column: array[int] = getattr(s, name)
    if column.typecode != WIDE and values:
        low, high = _NARROW_RANGE[column.typecode]
        if min(values) < low or max(values) > high:
            column = _widen(s, name)
    column.extend(values)


def append_column(s: _Summaries, name: str, typecode: str, data: bytes) -> None:
    """Append a column's values given as bytes of ``typecode`` items (a worker's), widening either side as needed."""
    column: array[int] | array[float] = getattr(s, name)
    if column.typecode == typecode:
        column.frombytes(data)
    elif typecode == WIDE:  # the incoming values do not fit this narrow column
        _widen(s, name).frombytes(data)
    else:  # narrow values into a column already widened
        narrow = array(typecode)
        narrow.frombytes(data)
        column.frombytes(array(WIDE, narrow).tobytes())


CHAIN_SCAN_NUMPY = 4096
"""A chain spread over more lines than this is looked up in the chain column with numpy."""


class _ChainLines:
    """The lines of each recovery chain, found on demand in the chain column between the chain's first and last line
    (16 bytes a chain, not an array each: a 1 GB trace has ~100,000 chains, mostly of 3-5 ticks close together).

    ``chain_lines[c]`` is a new ``array('q')`` of the lines of chain ``c`` summarized so far, ascending.
    """

    __slots__ = ("first", "last", "s")

    def __init__(self, s: _Summaries) -> None:
        self.s = s
        self.first = array("q")
        self.last = array("q")

    def __len__(self) -> int:
        return len(self.first)

    def new(self, line: int) -> None:
        """A new chain, whose first line is ``line`` (-1: none yet, ``add`` gives it)."""
        self.first.append(line)
        self.last.append(line)

    def add(self, chain: int, line: int) -> None:
        """``line`` (after every line added before) is in ``chain``."""
        if self.first[chain] < 0:
            self.first[chain] = line
        self.last[chain] = line

    def clear(self) -> None:
        del self.first[:]
        del self.last[:]

    def __getitem__(self, chain: int) -> array[int]:
        s = self.s
        first = self.first[chain]
        end = min(self.last[chain] + 1, len(s))  # ``kind`` is extended last: lines below hold their chain already
        if first < 0 or end <= first:
            return array("q")
        window = s.chain[first:end]  # a copy: the column may grow meanwhile (no buffer of it is held)
        if end - first > CHAIN_SCAN_NUMPY:
            import numpy as np

            rows = np.flatnonzero(np.frombuffer(window, dtype=np.int32) == chain) + first
            return array("q", rows.astype(np.int64).tobytes())
        return array("q", [i for i, c in enumerate(window, first) if c == chain])

    def __iter__(self) -> Iterator[array[int]]:
        for chain in range(len(self.first)):
            yield self[chain]


class _Summaries:
    """Parallel arrays, one entry per summarized line."""

    def __init__(self) -> None:
        self.kind = array("b")
        self.flags = array("H")
        self.episode = array("i")
        self.tick = array(NARROW["tick"])
        self.chain = array("i")
        self.context_chars = array(NARROW["context_chars"])
        self.latency = array("f")
        self.episodes = _Interner()
        self.chains = _Interner()
        self.chain_episode = array("i")
        self.chain_lines = _ChainLines(self)
        self.flag_lines: dict[int, array[int]] = {flag: array("q") for flag in FILTER_FLAGS.values()}
        self.episode_state: dict[int, _EpisodeRuns] = {}
        self.flagged_upto = 0
        """Lines below this number are in ``flag_lines`` (set after they are appended, so readers need no lock)."""

    def __len__(self) -> int:
        return len(self.kind)


class _EpisodeRuns:
    """Per open episode: failing runs per action verb and error class, and ticks in a row without progress."""

    __slots__ = ("no_progress", "runs")

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, int]] = {}
        self.no_progress = 0


def _run_flags(st: _EpisodeRuns, action: Any, outcome: Any, error_class: Any) -> int:
    """Thrash and repeated-precondition deadlock marks, by the definitions of ``pipeline.traces.analysis``.

    Thrash: the same action verb failing with the same error class ``THRASH_MIN`` times or more before that verb
    succeeds; the same with a precondition error (the world refusing: a lock, a missing thing) is a deadlock. A tick
    is marked from the repeat that turns the pattern on: earlier ticks of the run are not marked afterwards, so a
    mark is final once written (filters only ever append).
    """
    if outcome in FAILING_TICK_OUTCOMES:
        if not isinstance(error_class, str) or not error_class:
            error_class = "Timeout" if outcome == "timeout" else ("Fatal" if outcome == "death" else "Error")
        runs = st.runs.setdefault(action_verb(action) or INVALID_VERB, {})
        count = runs.get(error_class, 0) + 1
        runs[error_class] = count
        if count >= THRASH_MIN:
            return FLAG_DEADLOCK if error_class in PRECONDITION_CLASSES else FLAG_THRASH
        return 0
    if type(action) is not dict:
        return 0  # no verb: nothing succeeded
    # A success ends the runs of its verb (and of failures without a verb). The tool name is cheap and every verb
    # starts with its tool's name, so the full verb is worked out only when a run of that tool is open.
    tool = _tool_name(action) or "?"
    open_runs = st.runs
    for key in open_runs:
        if key == INVALID_VERB or key.split(":", 1)[0] == tool:
            break
    else:
        return 0
    verb = action_verb(action)
    if verb is not None:
        open_runs.pop(verb, None)
        open_runs.pop(INVALID_VERB, None)
    return 0


def _summarize_batch(s: _Summaries, first: int, lines: list[bytes]) -> None:
    """Append the summaries of ``lines`` (line numbers from ``first``) to ``s``.

    This is the hot loop of the indexer (millions of lines), hence the local names and one ``extend`` per column.
    Lines are decoded with the analyzer's decoder (``records.TraceRecord``: only the fields summaries read); a line
    it does not take as a record of a known kind goes the exact way (orjson), so bad lines stay what they were.
    """
    decode = fast_decoder.decode
    decode_errors = decode_fast_errors
    fast = valid_utf8(b"\n".join(lines))
    kind_codes = KIND_CODES
    intern_episode = s.episodes.intern
    episodes_state = s.episode_state
    kinds: list[int] = []
    flags_col: list[int] = []
    episodes: list[int] = []
    ticks: list[int] = []
    chains: list[int] = []
    contexts: list[int] = []
    latencies: list[float] = []
    flagged: list[tuple[int, int]] = []
    nan = math.nan
    last_episode_name: Any = None
    last_episode = NO_ID
    for i, raw in enumerate(lines, first):
        kind = KIND_UNKNOWN
        flags = 0
        episode = tick = chain = NO_ID
        context_chars = 0
        latency = nan
        rec: Any = None
        if fast:
            try:
                rec = decode(raw)
            except decode_errors:
                pass
            else:
                kind_name = rec.kind
                kind = kind_codes.get(kind_name, KIND_UNKNOWN) if type(kind_name) is str else KIND_UNKNOWN
                if kind == KIND_UNKNOWN:
                    rec = None  # not a known record: look at it the exact way below
        if rec is None:
            obj = _decode_exact(raw)
            if type(obj) is dict and obj:
                rec = record_from_dict(obj)
                kind_name = rec.kind
                kind = kind_codes.get(kind_name, KIND_UNKNOWN) if type(kind_name) is str else KIND_UNKNOWN
            elif obj is None or type(obj) is not dict:
                flags |= FLAG_BAD_LINE
        if rec is not None:
            ep = rec.episode
            if ep == last_episode_name:  # consecutive records mostly share their episode
                episode = last_episode
            elif type(ep) is str:
                episode = last_episode = intern_episode(ep)
                last_episode_name = ep
            elif type(ep) is int:
                episode = intern_episode(str(ep))
            if kind == KIND_TICK:
                tick = rec.tick
                if type(tick) is not int or not INT32_MIN <= tick <= INT32_MAX:
                    tick = NO_ID
                outcome = rec.outcome
                role = rec.chain_role
                error_class = rec.error_class
                trap = rec.trap
                if outcome == "death" or role == "death":
                    flags |= FLAG_DEATH
                elif outcome == "error" or outcome == "timeout":
                    flags |= FLAG_ERROR
                if role is not None:
                    if role == "attempt":
                        flags |= FLAG_RECOVERY
                    elif role == "recovered":
                        flags |= FLAG_RECOVERY | FLAG_RECOVERED
                    elif role == "failure":
                        flags |= FLAG_FAILURE
                if rec.recovery:
                    flags |= FLAG_RECOVERY
                if trap:
                    flags |= FLAG_TRAP
                    if trap == "deadlock":
                        flags |= FLAG_DEADLOCK
                if error_class is not None:
                    if error_class == "SchemaViolation":
                        flags |= FLAG_SCHEMA_ERROR
                    elif error_class == "Deadlock":
                        flags |= FLAG_DEADLOCK
                    elif type(error_class) is str and error_class.lower().startswith("thrash"):
                        flags |= FLAG_THRASH
                if rec.schema_error:
                    flags |= FLAG_SCHEMA_ERROR
                progress = rec.progress
                if progress is True:
                    flags |= FLAG_PROGRESS
                if episode != NO_ID:
                    runs = episodes_state.get(episode)
                    if runs is None:
                        runs = episodes_state[episode] = _EpisodeRuns()
                    if progress is True:
                        runs.no_progress = 0
                    elif progress is False:
                        runs.no_progress += 1
                        if runs.no_progress >= DEADLOCK_WINDOW:  # no progress for a window of ticks
                            flags |= FLAG_DEADLOCK
                    if runs.runs or outcome in FAILING_TICK_OUTCOMES:
                        flags |= _run_flags(runs, rec.action, outcome, error_class)
                chain_id = rec.chain_id
                if chain_id is not None:
                    chain = _chain_number(s, episode, str(chain_id), i)
                context_chars = rec.context_chars
                if type(context_chars) is not int or not 0 <= context_chars <= INT32_MAX:
                    context_chars = 0
                lat = rec.latency_s
                if type(lat) is float or type(lat) is int:
                    latency = lat
            elif kind == KIND_EPISODE_END:
                outcome = rec.outcome
                if outcome in DEATH_OUTCOMES:
                    flags |= FLAG_DEATH
                elif outcome in ("failure", "aborted"):
                    flags |= FLAG_ERROR
                episodes_state.pop(episode, None)
            elif kind == KIND_UNKNOWN:
                flags |= FLAG_BAD_LINE
        kinds.append(kind)
        flags_col.append(flags)
        episodes.append(episode)
        ticks.append(tick)
        chains.append(chain)
        contexts.append(context_chars)
        latencies.append(latency)
        if flags & _FILTER_MASK:
            flagged.append((i, flags))
    # ``kind`` last: its length is the number of summarized lines, so a reader in another thread that checks
    # ``i < len(summaries)`` finds every other column already holding line ``i``
    s.flags.extend(flags_col)
    s.episode.extend(episodes)
    _extend_narrow(s, "tick", ticks)
    s.chain.extend(chains)
    _extend_narrow(s, "context_chars", contexts)
    s.latency.extend(latencies)
    s.kind.extend(kinds)
    flag_lines = s.flag_lines
    for i, flags in flagged:
        for flag, lines_with_flag in flag_lines.items():
            if flags & flag:
                lines_with_flag.append(i)
    s.flagged_upto = first + len(lines)


def _decode_exact(raw: bytes) -> Any:
    """A line as orjson sees it: the decoded value, None when it is not JSON, ``{}`` for a blank line (harmless)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None if raw.strip() else {}


def _chain_number(s: _Summaries, episode: int, chain_id: str, line: int) -> int:
    """Chains are named per episode (``c1`` may recur in every episode), so the key joins both."""
    key = f"{s.episodes.names[episode] if episode != NO_ID else ''}\x1f{chain_id}"
    known = len(s.chains.names)
    chain = s.chains.intern(key)
    if chain == known:
        s.chain_lines.new(line)
        s.chain_episode.append(episode)
    else:
        s.chain_lines.last[chain] = line
    return chain
