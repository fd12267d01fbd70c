"""The storage of the viewer's per-line summary of a trace (``summary``): record kinds and flags, the parallel
columns (narrow while the values fit), interned episode and chain names (``summary_names``), and each chain's lines
found on demand."""

from __future__ import annotations

import weakref
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.traces.summary_names import NameStore
from pipeline.traces.summary_runs import RunColumn
from pipeline.traces.summary_sparse import SparseColumn

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


class _Column(Protocol):
    """A summary column: an ``array``, or one of the compact columns that read and append like one."""

    @property
    def typecode(self) -> str: ...

    def frombytes(self, data: bytes, /) -> None: ...

    def extend(self, values: list[Any], /) -> None: ...


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


class _ChainLines:
    """The lines of each recovery chain, found on demand in the (sparse) chain column between the chain's first and
    last line (16 bytes a chain, not an array each: a 1 GB trace has ~100,000 chains, mostly of 3-5 ticks close
    together).

    ``chain_lines[c]`` is a new ``array('q')`` of the lines of chain ``c`` summarized so far, ascending.
    """

    __slots__ = ("first", "last", "summaries")

    def __init__(self, s: _Summaries) -> None:
        self.summaries = weakref.ref(s)
        """(weak: the summary owns its chain lines, and a cycle would keep a dropped summary's columns until the
        next full collection, past the heap's release once a pass is done)"""
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

    def new_unseen(self, count: int) -> None:
        """``count`` new chains whose lines come later (``new(-1)`` each)."""
        if count:
            unseen = array(self.first.typecode, [-1]) * count
            self.first.extend(unseen)
            self.last.extend(unseen)

    def add_spans(self, chains: list[int], firsts: list[int], lasts: list[int]) -> None:
        """Each chain of ``chains`` (distinct) has lines from ``firsts[k]`` to ``lasts[k]`` (after every line added
        before): ``add`` of its first and last line."""
        first, last = self.first, self.last
        for chain, line, end in zip(chains, firsts, lasts, strict=True):
            if first[chain] < 0:
                first[chain] = line
            last[chain] = end

    def clear(self) -> None:
        del self.first[:]
        del self.last[:]

    def __getitem__(self, chain: int) -> array[int]:
        s = self.summaries()
        first = self.first[chain]
        if s is None:
            return array("q")
        last = min(self.last[chain], len(s) - 1)  # ``kind`` is extended last: lines below hold their chain already
        if first < 0 or last < first:
            return array("q")
        column = s.chain
        if isinstance(column, SparseColumn):
            return column.lines_with(chain, first, last)
        return array("q", [i for i, c in enumerate(column[first : last + 1], first) if c == chain])  # (transient)

    def __iter__(self) -> Iterator[array[int]]:
        for chain in range(len(self.first)):
            yield self[chain]


FLAG_LINES_NARROW = "i"
"""Filter line lists hold 32-bit line numbers: 4 bytes a flagged line. A file past 2**31 lines widens them to 64 bits
(``flag_lines_upto``); a reader extending its own array with them matches the typecode (``typecode``)."""


def flag_lines_upto(s: _Summaries, end: int) -> dict[int, array[int]]:
    """``s.flag_lines``, ready to take line numbers below ``end`` (widened to 64 bits for good if one would not fit; a
    reader in another thread sees the old or the new list, both holding every line flagged so far)."""
    lists = s.flag_lines
    if end - 1 > INT32_MAX:
        for flag, lines in lists.items():
            if lines.typecode != "q":
                lists[flag] = array("q", lines)
    return lists


class _Summaries:
    """Parallel arrays, one entry per summarized line.

    ``transient``: a summary whose lines are dropped as soon as they are sent or read (a worker's, a scratch one):
    plain ``array('i')`` episode and chain columns and names in a list and a dict (``ListNames``), which are faster
    to append to; the viewer's own summary keeps the compact forms (``RunColumn``, ``SparseColumn``, ``NameStore``).
    Both read and give the same values.
    """

    def __init__(self, *, transient: bool = False) -> None:
        self.kind = array("b")
        self.flags = array("H")
        self.episode: RunColumn | array[int] = array("i") if transient else RunColumn()
        self.tick = array(NARROW["tick"])
        self.chain: SparseColumn | array[int] = array("i") if transient else SparseColumn()
        self.context_chars = array(NARROW["context_chars"])
        self.latency = array("f")
        self.episodes: NameStore | ListNames = ListNames() if transient else NameStore()
        self.chains: NameStore | ListNames = ListNames() if transient else NameStore()
        self.chain_episode = array("i")
        self.chain_lines = _ChainLines(self)
        self.flag_lines: dict[int, array[int]] = {flag: array(FLAG_LINES_NARROW) for flag in FILTER_FLAGS.values()}
        self.episode_state: dict[int, _EpisodeRuns] = {}
        self.flagged_upto = 0
        """Lines below this number are in ``flag_lines`` (set after they are appended, so readers need no lock)."""

    def __len__(self) -> int:
        return len(self.kind)


class ListNames:
    """Names in a list and a dict, with ``NameStore``'s interface: faster to intern into, ~130 bytes a name."""

    __slots__ = ("ids", "names")

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

    def extend_new(self, names: Sequence[str], tags: Sequence[int] | None = None) -> None:
        for name in names:
            self.intern(name)

    def find(self, name: str) -> int | None:
        return self.ids.get(name)

    def number(self, name: str) -> int:
        return self.ids[name]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> str:
        return self.names[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def clear(self) -> None:
        self.names.clear()
        self.ids.clear()

    def compact(self) -> None:
        pass


def compact_summaries(s: _Summaries) -> None:
    """Every array of ``s`` copied to its exact size, once the summary is complete: a growing array keeps ~6% of
    room (a bytearray ~12%), ~2 MB over the columns of a 1 GB trace. Call it in the thread that appends; a reader in
    another thread sees the old or the new array, both holding every line summarized so far (as with ``_widen``)."""
    for name in (*_COLUMN_NAMES, "chain_episode"):
        column = getattr(s, name)
        if isinstance(column, SparseColumn | RunColumn):
            column.compact()
        else:
            setattr(s, name, array(column.typecode, column))
    for flag, lines in s.flag_lines.items():
        s.flag_lines[flag] = array(lines.typecode, lines)
    chain_lines = s.chain_lines
    chain_lines.first = array(chain_lines.first.typecode, chain_lines.first)
    chain_lines.last = array(chain_lines.last.typecode, chain_lines.last)
    s.episodes.compact()
    s.chains.compact()


_COLUMN_NAMES = ("flags", "episode", "tick", "chain", "context_chars", "latency", "kind")
"""The per-line columns (``kind`` last: its length is the number of lines summarized)."""


class _EpisodeRuns:
    """Per open episode: failing runs per action verb and error class, and ticks in a row without progress."""

    __slots__ = ("no_progress", "runs")

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, int]] = {}
        self.no_progress = 0


def chain_number(s: _Summaries, episode: int, chain_id: str, line: int) -> int:
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
