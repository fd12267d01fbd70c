"""A line index of a (possibly growing) JSONL trace file, so viewers can open gigabytes at once and tail them.

Why it is built this way (see PERFORMANCE.md): the file is scanned in 1 MiB chunks and the end offset of every line
goes into an ``array('q')`` (8 bytes a line, not the ~60 of a Python list); lines are read on demand with
``os.pread`` and parsed with orjson into small LRU caches, so memory stays bounded whatever the file size. The first
chunk is indexed as soon as the file is opened, so a viewer can draw its first screen before the scan ends.

A second pass (behind the scan) builds a compact per-line summary in parallel arrays: record kind, episode, tick,
recovery chain, flags (death, recovery, trap, schema error, thrash, deadlock, ...), context size and latency. Filters,
the chain catalogue and the plots read the summary instead of re-parsing the file.

One thread (the indexer, ``run``) writes; any other thread may read. A file that shrinks, is replaced (rotation:
the path now names another inode) or whose last indexed newline is gone (truncated and rewritten) is indexed from
scratch and ``generation`` goes up, which tells readers to drop what they derived from the old content.
"""

from __future__ import annotations

import bisect
import math
import os
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import orjson

from pipeline.fsio import open_regular
from pipeline.problems import Problem
from pipeline.traces.analysis import (
    DEATH_OUTCOMES,
    DEFAULT_DEADLOCK_WINDOW,
    DEFAULT_THRASH_MIN,
    FAILING_TICK_OUTCOMES,
    INVALID_VERB,
    PRECONDITION_CLASSES,
    _tool_name,
    action_verb,
)
from pipeline.traces.records import TraceRecord, decode_fast_errors, fast_decoder, record_from_dict, valid_utf8

CHUNK_SIZE = 1 << 20
"""Bytes read per scan step: large enough for bytes-level speed, small enough to stay responsive."""
PRIME_SIZE = 64 << 10
"""Bytes indexed synchronously on open, so the first screen needs no wait for the indexer."""
SUMMARY_BATCH_BYTES = 1 << 20
"""Bytes of lines summarized per step."""
CACHE_LINES = 4096
"""Raw lines kept; a screen shows at most a few hundred."""
PARSED_LINES = 1024
"""Parsed lines kept: fewer, since each is a tree of objects the garbage collector has to walk."""
THRASH_MIN = DEFAULT_THRASH_MIN
DEADLOCK_WINDOW = DEFAULT_DEADLOCK_WINDOW
IDLE_POLL_S = 0.05
"""How often a followed file is checked for growth when nothing is happening (20 Hz, the frame rate)."""

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

FileChange = Literal["same", "grown", "truncated", "rotated", "missing"]

VECTOR_SCAN_BYTES = 256 << 10
"""Chunks at least this big are scanned for newlines with numpy (imported on first use, in the indexer thread, so
opening a file and drawing its first screen never waits for it)."""
_NUMPY: list[Any] = []


def _numpy() -> Any:
    """numpy, or None where it cannot be imported (the plain loop is used then)."""
    if not _NUMPY:
        try:
            import numpy
        except ImportError:
            _NUMPY.append(None)
        else:
            _NUMPY.append(numpy if array("q").itemsize == numpy.dtype(numpy.int64).itemsize else None)
    return _NUMPY[0]


K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """A small thread-safe LRU map (the indexer thread and the UI thread may both read lines)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


LineError = Problem
"""A line that is not a usable record; ``reason`` names the field when one is at fault."""


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


class _Summaries:
    """Parallel arrays, one entry per summarized line."""

    def __init__(self) -> None:
        self.kind = array("b")
        self.flags = array("H")
        self.episode = array("i")
        self.tick = array("i")
        self.chain = array("i")
        self.context_chars = array("i")
        self.latency = array("f")
        self.episodes = _Interner()
        self.chains = _Interner()
        self.chain_episode = array("i")
        self.chain_lines: list[array[int]] = []
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
        rec: TraceRecord | None = None
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
    s.tick.extend(ticks)
    s.chain.extend(chains)
    s.context_chars.extend(contexts)
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


def _open_regular_fd(path: Path) -> int:
    """A blocking read descriptor on regular file ``path``; a FIFO, device or socket raises ``NotARegularFile``."""
    fh = open_regular(path)
    try:
        return os.dup(fh.fileno())
    finally:
        fh.close()


def _chain_number(s: _Summaries, episode: int, chain_id: str, line: int) -> int:
    """Chains are named per episode (``c1`` may recur in every episode), so the key joins both."""
    key = f"{s.episodes.names[episode] if episode != NO_ID else ''}\x1f{chain_id}"
    known = len(s.chains.names)
    chain = s.chains.intern(key)
    if chain == known:
        s.chain_lines.append(array("q"))
        s.chain_episode.append(episode)
    s.chain_lines[chain].append(line)
    return chain


class TraceIndex:
    """Index of one JSONL trace file: ``len(index)`` lines, ``line(i)`` bytes, ``record(i)`` parsed, summaries."""

    def __init__(
        self,
        path: Path,
        *,
        include_partial: bool = False,
        chunk_size: int = CHUNK_SIZE,
        cache_lines: int = CACHE_LINES,
        prime_bytes: int = PRIME_SIZE,
    ) -> None:
        """Open ``path`` and index its first ``prime_bytes``.

        ``include_partial``: count a last line without a newline as a line (a finished file); when following a file
        that is being written, leave it out until its newline arrives.
        """
        self.path = Path(path)
        self.include_partial = include_partial
        self.chunk_size = chunk_size
        self.generation = 0
        self.lock = threading.RLock()
        self._fd = _open_regular_fd(self.path)
        self._inode = os.fstat(self._fd).st_ino
        self._raw: LRUCache[tuple[int, int], bytes] = LRUCache(cache_lines)
        self._parsed: LRUCache[tuple[int, int], dict[str, Any] | LineError] = LRUCache(min(cache_lines, PARSED_LINES))
        self._provisional: LRUCache[tuple[int, int], int] = LRUCache(min(cache_lines, PARSED_LINES))
        self._reset_state()
        self.size = os.fstat(self._fd).st_size
        if prime_bytes:
            self.scan_step(prime_bytes)
            self.summarize_step()

    def _reset_state(self) -> None:
        self.ends: array[int] = array("q")
        self.scanned = 0
        self.partial_counted = False
        self.summaries = _Summaries()
        self._raw.clear()
        self._parsed.clear()
        self._provisional.clear()

    # -- reading -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ends)

    @property
    def summarized(self) -> int:
        return len(self.summaries)

    @property
    def complete(self) -> bool:
        """Every byte seen so far is indexed and summarized."""
        return self.scanned >= self.size and self.summarized >= len(self.ends)

    def line_span(self, i: int) -> tuple[int, int]:
        """Byte range ``[start, end)`` of line ``i`` including its newline."""
        ends = self.ends
        end = ends[i]
        start = ends[i - 1] if i > 0 else 0
        return start, end

    def line(self, i: int) -> bytes:
        """Line ``i`` (0-based) without its line ending; raises IndexError past the end."""
        if i < 0 or i >= len(self.ends):
            raise IndexError(f"line {i} out of range (0..{len(self.ends) - 1})")
        key = (self.generation, i)
        cached = self._raw.get(key)
        if cached is not None:
            return cached
        start, end = self.line_span(i)
        data = os.pread(self._fd, end - start, start)
        if data.endswith(b"\n"):
            data = data[:-1]
        if data.endswith(b"\r"):
            data = data[:-1]
        self._raw.put(key, data)
        return data

    def prefetch(self, first: int, last: int) -> None:
        """Read lines ``first..last`` (inclusive) with one ``pread`` into the line cache.

        A screen of a stream is a run of consecutive lines; one read for all of them matters because every read
        gives the interpreter away, and a busy indexer thread may keep it for a switch interval each time.
        """
        total = len(self.ends)
        first, last = max(0, first), min(last, total - 1)
        if first > last:
            return
        generation = self.generation
        missing = [i for i in range(first, last + 1) if self._raw.get((generation, i)) is None]
        if len(missing) < 2:
            return
        first, last = missing[0], missing[-1]
        begin = self.ends[first - 1] if first else 0
        data = os.pread(self._fd, self.ends[last] - begin, begin)
        if len(data) != self.ends[last] - begin:
            return  # the file shrank under us: the indexer will notice and start over
        parts = data.split(b"\n")
        for offset, raw in enumerate(parts[: last - first + 1]):
            self._raw.put((generation, first + offset), raw[:-1] if raw.endswith(b"\r") else raw)

    def record(self, i: int) -> dict[str, Any] | LineError:
        """Line ``i`` parsed as a JSON object, or a ``LineError`` saying why it is not one (cached)."""
        key = (self.generation, i)
        cached = self._parsed.get(key)
        if cached is not None:
            return cached
        result = self._parse(self.line(i), i)
        self._parsed.put(key, result)
        return result

    def _parse(self, raw: bytes, i: int) -> dict[str, Any] | LineError:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return LineError(str(self.path), i + 1, f"not valid JSON ({exc})")
        if not isinstance(obj, dict):
            return LineError(str(self.path), i + 1, f"not a JSON object (a {type(obj).__name__})")
        return obj

    def summary(self, i: int) -> LineSummary | None:
        """The summary of line ``i``, or None while the summary pass has not reached it."""
        s = self.summaries
        if i < 0 or i >= len(s):
            return None
        episode = s.episode[i]
        chain = s.chain[i]
        latency = s.latency[i]
        tick = s.tick[i]
        return LineSummary(
            line=i,
            kind=s.kind[i],
            flags=s.flags[i],
            episode=s.episodes.names[episode] if episode != NO_ID else None,
            tick=tick if tick != NO_ID else None,
            chain=s.chains.names[chain] if chain != NO_ID else None,
            context_chars=s.context_chars[i],
            latency_s=None if math.isnan(latency) else float(latency),
        )

    def line_flags(self, i: int) -> int:
        """The flags of line ``i``: from the summary once the summary pass reached it, else worked out from the line
        alone (cached), so a screen far ahead of the pass (End on a big file) shows its badges at once.

        The line alone gives every mark but the two that need the ticks before it in the episode: thrash and
        deadlock from repeated failures or a window without progress; they appear when the pass arrives.
        """
        s = self.summaries
        if 0 <= i < len(s):
            return s.flags[i]
        if i < 0 or i >= len(self.ends):
            return 0
        key = (self.generation, i)
        cached = self._provisional.get(key)
        if cached is not None:
            return cached
        scratch = _Summaries()
        _summarize_batch(scratch, i, [self.line(i)])
        flags = scratch.flags[0]
        self._provisional.put(key, flags)
        return flags

    def flag_lines(self, flag: int) -> array[int]:
        """Lines (ascending) whose summary has ``flag``; grows as the summary pass goes on."""
        return self.summaries.flag_lines[flag]

    @property
    def chain_count(self) -> int:
        return len(self.summaries.chain_lines)

    def chain_name(self, chain: int) -> str:
        return self.summaries.chains.names[chain]

    def chain_lines(self, chain: int) -> array[int]:
        """Lines of recovery chain number ``chain`` (in order of first appearance), ascending."""
        return self.summaries.chain_lines[chain]

    def chain_of_line(self, i: int) -> int | None:
        s = self.summaries
        if i < 0 or i >= len(s):
            return None
        chain = s.chain[i]
        return None if chain == NO_ID else chain

    def line_at_offset(self, offset: int) -> int:
        """The line holding byte ``offset``."""
        return bisect.bisect_right(self.ends, offset)

    # -- scanning --------------------------------------------------------------------------------------------------
    def scan_step(self, max_bytes: int | None = None) -> int:
        """Index up to ``max_bytes`` more of the file (one chunk by default); returns the bytes consumed."""
        want = self.chunk_size if max_bytes is None else max_bytes
        with self.lock:
            start = self.scanned
            if start >= self.size:
                return 0
            data = os.pread(self._fd, min(want, self.size - start), start)
            if not data:
                return 0
            np = _numpy() if len(data) >= VECTOR_SCAN_BYTES else None
            if np is not None:  # newlines found in one vectorized pass: ~5x the speed of the loop below
                positions = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
                positions += start + 1
                self.ends.frombytes(positions.astype(np.int64).tobytes())
            else:
                # bytes.find per line measured faster than split + accumulate for lines of a few hundred bytes
                find = data.find
                append = self.ends.append
                j = find(b"\n")
                while j >= 0:
                    append(start + j + 1)
                    j = find(b"\n", j + 1)
            if self.ends and self.ends[-1] > self.scanned:
                self.scanned = self.ends[-1]
            else:  # no newline in the whole chunk
                nl = self._find_newline(start + len(data)) if start + len(data) < self.size else None
                if nl is None:
                    return self._count_partial()
                self.ends.append(nl + 1)  # a line longer than one chunk
                self.scanned = nl + 1
            return self.scanned - start

    def _find_newline(self, offset: int) -> int | None:
        while offset < self.size:
            data = os.pread(self._fd, min(self.chunk_size, self.size - offset), offset)
            if not data:
                return None
            j = data.find(b"\n")
            if j >= 0:
                return offset + j
            offset += len(data)
        return None

    def _count_partial(self) -> int:
        """Count the unterminated last line when the file is finished; returns its size (0 if not counted)."""
        last = self.ends[-1] if self.ends else 0
        if self.include_partial and not self.partial_counted and self.size > last:
            self.ends.append(self.size)
            self.scanned = self.size
            self.partial_counted = True
            return self.size - last
        return 0

    # -- summaries -------------------------------------------------------------------------------------------------
    def summarize_step(self, max_bytes: int = SUMMARY_BATCH_BYTES) -> int:
        """Summarize the next lines (about ``max_bytes`` of them); returns how many lines were summarized."""
        with self.lock:
            s = self.summaries
            first = len(s)
            total = len(self.ends)
            if first >= total:
                return 0
            start = self.ends[first - 1] if first else 0
            limit = start + max_bytes
            last = bisect.bisect_left(self.ends, limit, first, total)
            last = max(last, first + 1)
            last = min(last, total)
            end = self.ends[last - 1]
            data = os.pread(self._fd, end - start, start)
            parts = data.split(b"\n")
            if len(parts) > last - first:
                parts.pop()
            _summarize_batch(self.summaries, first, parts)
            return len(parts)

    # -- following -------------------------------------------------------------------------------------------------
    def check_file(self) -> FileChange:
        """Look at the file again: note growth, and start over when it was truncated, rewritten or replaced."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "missing"
        with self.lock:
            if st.st_ino != self._inode:
                fd = _open_regular_fd(self.path)
                os.close(self._fd)
                self._fd = fd
                self._inode = os.fstat(fd).st_ino
                self._start_over(os.fstat(fd).st_size)
                return "rotated"
            size = os.fstat(self._fd).st_size
            last = self.ends[-1] if self.ends else 0
            if size < self.scanned or size < last or not self._last_newline_intact(last, size):
                self._start_over(size)
                return "truncated"
            if self.partial_counted and size > last:
                self._start_over(size)  # the "finished" last line is still being written
                return "grown"
            if size > self.size:
                self.size = size
                return "grown"
            return "same"

    def _last_newline_intact(self, last: int, size: int) -> bool:
        if last == 0 or self.partial_counted:
            return True
        return os.pread(self._fd, 1, last - 1) == b"\n" if size >= last else False

    def _start_over(self, size: int) -> None:
        self._reset_state()
        self.size = size
        self.generation += 1

    def work_step(self) -> bool:
        """One bounded piece of work (scan before summaries); False when there is nothing to do right now."""
        if self.scanned < self.size and self.scan_step():
            return True
        if self.summarized < len(self.ends):
            return self.summarize_step() > 0
        return False

    def run(
        self,
        stop: threading.Event,
        *,
        follow: bool,
        idle_s: float = IDLE_POLL_S,
        on_idle: Callable[[], None] | None = None,
        wait_change: Callable[[float], object] | None = None,
        keep_following: Callable[[], bool] | None = None,
    ) -> None:
        """The indexer loop: index everything, then (when following) wait for growth until ``stop`` is set, or
        until ``keep_following`` says no (the writer is done: the loop ends once the file is indexed).

        Between steps it sleeps for 0 seconds, which hands the interpreter to other threads (the UI) each chunk.
        ``wait_change(idle_s)`` waits for the file to change (a ``pipeline.watch.FileWatch``, which wakes on the
        write itself); without it the file is polled every ``idle_s``.
        """
        while not stop.is_set():
            if self.work_step():
                stop.wait(0)
                continue
            if on_idle is not None:
                on_idle()
            if not follow or (keep_following is not None and not keep_following()):
                return
            if wait_change is not None:
                wait_change(idle_s)
            else:
                stop.wait(idle_s)
            if stop.is_set():
                return
            self.check_file()

    def find(
        self,
        needle: str,
        start: int,
        *,
        forward: bool = True,
        accept: Callable[[int], bool] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> int | None:
        """The first line from ``start`` (inclusive, in the given direction) containing ``needle``, ignoring ASCII case.

        Reads whole lines a chunk at a time and searches bytes (no parsing; a match never spans lines); ``accept``
        can reject a line (a filter) and the search goes on.
        """
        pattern = needle.lower().encode()
        if not pattern or b"\n" in pattern:
            return None
        ends = self.ends
        total = len(ends)
        if forward:
            i = max(0, start)
            while i < total:
                if cancelled is not None and cancelled():
                    return None
                begin = ends[i - 1] if i else 0
                j = min(max(bisect.bisect_left(ends, begin + self.chunk_size, i, total), i + 1), total)
                data = os.pread(self._fd, ends[j - 1] - begin, begin).lower()
                pos = data.find(pattern)
                while pos >= 0:
                    line = self.line_at_offset(begin + pos)
                    if accept is None or accept(line):
                        return line
                    pos = data.find(pattern, ends[line] - begin)
                i = j
            return None
        i = min(start, total - 1)
        while i >= 0:
            if cancelled is not None and cancelled():
                return None
            end = ends[i]
            j = min(bisect.bisect_right(ends, end - self.chunk_size, 0, i), i)
            begin = ends[j - 1] if j else 0
            data = os.pread(self._fd, end - begin, begin).lower()
            pos = data.rfind(pattern)
            while pos >= 0:
                line = self.line_at_offset(begin + pos)
                if accept is None or accept(line):
                    return line
                line_start = (ends[line - 1] if line else 0) - begin
                pos = data.rfind(pattern, 0, line_start) if line_start > 0 else -1
            i = j - 1
        return None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TraceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
