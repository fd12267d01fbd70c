"""A line index of a (possibly growing) JSONL trace file, so viewers can open gigabytes at once and tail them.
Bigger than 400 lines: ``TraceIndex`` is one object whose scan, summary hand-off, following and search share one
lock and one file descriptor; the per-line summary itself is ``pipeline.traces.summary``.

Why it is built this way (see PERFORMANCE.md): the file is scanned in 1 MiB chunks and the end offset of every line
goes into an ``array('q')`` (8 bytes a line, not the ~60 of a Python list); lines are read on demand with
``os.pread`` and parsed with orjson into small LRU caches, so memory stays bounded whatever the file size. The first
chunk is indexed as soon as the file is opened, so a viewer can draw its first screen before the scan ends.

A second pass (behind the scan) builds a compact per-line summary in parallel arrays: record kind, episode, tick,
recovery chain, flags (death, recovery, trap, schema error, thrash, deadlock, ...), context size and latency. Filters,
the chain catalogue and the plots read the summary instead of re-parsing the file. With tens of megabytes left to
summarize, the pass runs in a worker process (``summary_worker``) that sends the columns back; the worker is let go
once everything is summarized (its per-episode state comes back, so growth is summarized here from there on).

One thread (the indexer, ``run``) writes; any other thread may read. A file that shrinks, is replaced (rotation:
the path now names another inode) or whose last indexed newline is gone (truncated and rewritten) is indexed from
scratch and ``generation`` goes up, which tells readers to drop what they derived from the old content.
"""

from __future__ import annotations

import bisect
import math
import os
import pickle
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import orjson

from pipeline.fsio import open_regular
from pipeline.problems import Problem
from pipeline.traces.summary import (  # noqa: F401  (re-exported: viewers read the flags from here)
    FILTER_FLAGS,
    FLAG_BAD_LINE,
    FLAG_DEADLOCK,
    FLAG_DEATH,
    FLAG_ERROR,
    FLAG_FAILURE,
    FLAG_PROGRESS,
    FLAG_RECOVERED,
    FLAG_RECOVERY,
    FLAG_SCHEMA_ERROR,
    FLAG_THRASH,
    FLAG_TRAP,
    KIND_CODES,
    KIND_EPISODE_END,
    KIND_EPISODE_START,
    KIND_TICK,
    KIND_UNKNOWN,
    NO_ID,
    LineSummary,
    _Summaries,
    _summarize_batch,
    append_column,
)
from pipeline.traces.summary_split import RangeMerge
from pipeline.traces.summary_worker import COLUMNS, SummaryDelta, SummaryWorker, release_free_heap

CHUNK_SIZE = 1 << 20
"""Bytes read per scan step: large enough for bytes-level speed, small enough to stay responsive."""
PRIME_SIZE = 64 << 10
"""Bytes indexed synchronously on open, so the first screen needs no wait for the indexer."""
SUMMARY_BATCH_BYTES = 1 << 20
"""Bytes of lines summarized per step."""
WORKER_MIN_BYTES = 48 << 20
"""Bytes left to summarize that make a worker process (``summary_worker``) worth its start-up (~0.3 s)."""
WORKER_BATCH_BYTES = 4 << 20
"""Bytes of lines per batch asked of the worker; ``WORKER_AHEAD`` batches are asked ahead so it never waits."""
WORKER_AHEAD = 3
WORKER_SCAN_AHEAD = 32
"""Batches asked of the worker while the newline scan goes on (their answers wait in the worker, ~200 KB each)."""
CACHE_LINES = 4096
"""Raw lines kept; a screen shows at most a few hundred."""
PARSED_LINES = 1024
"""Parsed lines kept: fewer, since each is a tree of objects the garbage collector has to walk."""
TAIL_BYTES = 2 << 20
"""Bytes read back from the end of a file for ``read_tail`` (thousands of lines: a screen needs a few dozen)."""
IDLE_POLL_S = 0.05
"""How often a followed file is checked for growth when nothing is happening (20 Hz, the frame rate)."""

FileChange = Literal["same", "grown", "truncated", "rotated", "missing"]

VECTOR_SCAN_BYTES = 256 << 10
"""Chunks at least this big are scanned for newlines with numpy (imported on first use, in the indexer thread, so
opening a file and drawing its first screen never waits for it)."""
VECTOR_STEP_BYTES = 8 << 20
"""Bytes per scan step when chunks are scanned with numpy: fewer steps, fewer hand-overs of the interpreter lock
between the indexer and the UI thread, so the end of a big file is reached sooner (End shows the last record)."""
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


def _apply_delta(s: _Summaries, delta: SummaryDelta) -> None:
    """Append a worker's batch to ``s``: names, chain lines and filter lines, then the columns (``kind`` last)."""
    np = _numpy()
    first = delta.first
    for name in delta.episode_names:
        s.episodes.intern(name)
    for name in delta.chain_names:
        s.chains.intern(name)
        s.chain_lines.new(-1)
    s.chain_episode.frombytes(delta.chain_episodes)
    columns = dict(zip(COLUMNS, delta.columns, strict=True))
    chain = np.frombuffer(columns["chain"], dtype=np.int32)
    rows = np.flatnonzero(chain != NO_ID)
    chain_lines = s.chain_lines
    for line, number in zip((rows + first).tolist(), chain[rows].tolist(), strict=True):
        chain_lines.add(number, line)
    for name, typecode in zip(COLUMNS, delta.typecodes, strict=True):
        append_column(s, name, typecode, columns[name])
    flags = np.frombuffer(columns["flags"], dtype=np.uint16)
    for flag, lines in s.flag_lines.items():
        lines.frombytes((np.flatnonzero(flags & flag) + first).astype(np.int64).tobytes())
    s.flagged_upto = first + delta.count


def _line_alone_flags(i: int, raw: bytes) -> int:
    """The flags of line ``i`` worked out from the line alone (no thrash or deadlock: they need the ticks before)."""
    scratch = _Summaries()
    _summarize_batch(scratch, i, [raw])
    return scratch.flags[0]


class TailLines:
    """The last lines of a file, found by reading back from its end before the forward scan got there.

    Their line numbers are not known until the scan arrives; they are counted from the end (``-1`` is the last
    line). ``start`` is the byte where the first of them begins, ``ends`` the end of each.
    """

    def __init__(self, index: TraceIndex, start: int, ends: array[int], size: int, generation: int) -> None:
        self.index = index
        self.start = start
        self.ends = ends
        self.size = size
        self.generation = generation
        self._flags: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.ends)

    def line(self, k: int) -> bytes:
        """Tail line ``k`` (0: the first of the tail) without its line ending."""
        begin = self.ends[k - 1] if k else self.start
        data = os.pread(self.index._fd, self.ends[k] - begin, begin)
        return data.removesuffix(b"\n").removesuffix(b"\r")

    def record(self, k: int) -> dict[str, Any] | LineError:
        """Tail line ``k`` parsed (a problem has no line number: it is not known yet)."""
        rec = self.index._parse(self.line(k), 0)
        return LineError(rec.file, None, rec.reason, rec.field) if isinstance(rec, LineError) else rec

    def flags(self, k: int) -> int:
        """Badges of tail line ``k`` from the line alone (cached), as ``TraceIndex.line_flags`` gives them."""
        flags = self._flags.get(k)
        if flags is None:
            flags = self._flags[k] = _line_alone_flags(-1, self.line(k))
        return flags


def _open_regular_fd(path: Path) -> int:
    """A blocking read descriptor on regular file ``path``; a FIFO, device or socket raises ``NotARegularFile``."""
    fh = open_regular(path)
    try:
        return os.dup(fh.fileno())
    finally:
        fh.close()


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
        worker_min_bytes: int | None = WORKER_MIN_BYTES,
    ) -> None:
        """Open ``path`` and index its first ``prime_bytes``.

        ``include_partial``: count a last line without a newline as a line (a finished file); when following a file
        that is being written, leave it out until its newline arrives. ``worker_min_bytes``: summarize in a second
        process when at least this much is left to summarize (None: never).
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
        self.worker_min_bytes = worker_min_bytes
        self._worker: SummaryWorker | None = None
        self._reset_state()
        self.size = os.fstat(self._fd).st_size
        if prime_bytes:
            self.scan_step(prime_bytes)
            self.summarize_step()

    def _reset_state(self) -> None:
        self._stop_worker(keep_state=False)
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
        flags = _line_alone_flags(i, self.line(i))
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

    def read_tail(self, max_bytes: int = TAIL_BYTES) -> TailLines | None:
        """The last lines of the file (those in its last ``max_bytes``), found by reading back from its end, for a
        view that wants the end (End, follow) before the forward scan reached it; None when the scan is already
        there or no whole line fits in ``max_bytes``."""
        with self.lock:
            size, generation, scanned = self.size, self.generation, self.scanned
            if scanned >= size:
                return None
            begin = max(scanned, size - max_bytes)
            data = os.pread(self._fd, size - begin, begin)
        if len(data) != size - begin:
            return None  # shrunk meanwhile: the indexer will start over
        first = 0
        if begin > scanned:  # (the scan stops on line boundaries) begin is inside a line: skip to the next
            at = data.find(b"\n")
            if at < 0:
                return None
            first = at + 1
        ends: array[int] = array("q")
        j = data.find(b"\n", first)
        while j >= 0:
            ends.append(begin + j + 1)
            j = data.find(b"\n", j + 1)
        last = ends[-1] if ends else begin + first
        if self.include_partial and last < size:
            ends.append(size)
        if not ends:
            return None
        return TailLines(self, begin + first, ends, size, generation)

    # -- scanning --------------------------------------------------------------------------------------------------
    def scan_step(self, max_bytes: int | None = None) -> int:
        """Index up to ``max_bytes`` more of the file (one chunk by default); returns the bytes consumed."""
        want = self.chunk_size if max_bytes is None else max_bytes
        if max_bytes is None and want >= VECTOR_SCAN_BYTES:
            want = max(want, VECTOR_STEP_BYTES)
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
    _ahead: SummaryWorker | None = None
    """A second worker summarizing the second half of what was left once the scan ended, from an empty state."""
    _ahead_first = 0
    """The first line of the second worker's range (the first worker stops there)."""
    _merge: RangeMerge | None = None
    split_lines = 0
    """Lines summarized by a second worker (for tests and benchmarks)."""
    SPLIT_MAX_BATCHES = 1024
    """Batches of the second worker's range at most (~70 bytes of request each, asked at once)."""

    def summarize_step(self, max_bytes: int = SUMMARY_BATCH_BYTES) -> int:
        """Summarize the next lines (about ``max_bytes`` of them); returns how many lines were summarized.

        With much left to summarize, a worker process does it (``summary_worker``), batches asked ahead; once the
        scan has reached the end of the file, a second worker takes the second half of what is left.
        """
        self._maybe_start_worker(self.ends[-1] if self.ends else 0)
        if self._worker is not None:
            return self._summarize_by_worker()
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

    def _maybe_start_worker(self, upto: int) -> None:
        """Start the worker when bytes ``upto`` leave enough to summarize (the scan calls this with the file size,
        so the worker's start-up overlaps the newline scan). While the scan goes on, the worker is given the lines
        scanned so far (up to ``WORKER_SCAN_AHEAD`` batches; it keeps its answers until they are read), so the
        summary overlaps the scan too."""
        worker = self._worker
        if worker is not None:
            if self.scanned < self.size and self._ahead is None:
                with self.lock:
                    first = (
                        worker.in_flight[-1][0] + worker.in_flight[-1][1] if worker.in_flight else len(self.summaries)
                    )
                    self._ask(worker, first, len(self.ends), WORKER_SCAN_AHEAD)  # (a dead worker: the next answer says)
            return
        if self.worker_min_bytes is None:
            return
        with self.lock:
            done = self.ends[len(self.summaries) - 1] if len(self.summaries) else 0
            # numpy (to take the answers in) is imported only now: never on open, in the UI thread
            if upto - done >= self.worker_min_bytes and _numpy() is not None:
                self._worker = SummaryWorker.start(self.path, self.summaries)
                if self._worker is None:
                    self.worker_min_bytes = None

    def _ask(self, worker: SummaryWorker, first: int, limit: int, ahead: int) -> bool:
        """Ask ``worker`` for batches from line ``first`` up to line ``limit`` (at most ``ahead`` in flight)."""
        ends = self.ends
        while len(worker.in_flight) < ahead and first < limit:
            start = ends[first - 1] if first else 0
            last = min(max(bisect.bisect_left(ends, start + WORKER_BATCH_BYTES, first, limit), first + 1), limit)
            try:
                worker.ask(first, start, ends[last - 1], last - first)
            except OSError:
                return False
            first = last
        return True

    def _maybe_split(self, first: int, total: int) -> None:
        """Once the scan is done, give the second half of the lines not yet asked for to a second worker."""
        if self.worker_min_bytes is None or self.scanned < self.size or self._fd < 0:
            return
        ends = self.ends
        begin = ends[first - 1] if first else 0
        if total - first < 2 or ends[total - 1] - begin < 2 * self.worker_min_bytes:
            return
        # at most ``SPLIT_MAX_BATCHES`` batches: they are all asked at once (the requests must fit in its pipe)
        middle_byte = max((begin + ends[total - 1]) // 2, ends[total - 1] - self.SPLIT_MAX_BATCHES * WORKER_BATCH_BYTES)
        middle = bisect.bisect_left(ends, middle_byte, first, total)
        middle = min(max(middle, first + 1), total - 1)
        ahead = SummaryWorker.start(self.path, _Summaries())
        if ahead is None:
            return
        self._ahead, self._ahead_first = ahead, middle
        if not self._ask(ahead, middle, total, total):  # all at once: it sends them back as it goes
            self._ahead = None
            ahead.close()

    def _summarize_by_worker(self) -> int:
        worker = self._worker
        assert worker is not None
        generation = self.generation
        with self.lock:
            total = len(self.ends)
            first = worker.in_flight[-1][0] + worker.in_flight[-1][1] if worker.in_flight else len(self.summaries)
            if self._ahead is None and self._merge is None:
                self._maybe_split(first, total)
            ahead = self._ahead
            limit = self._ahead_first if ahead is not None else total
            if not self._ask(worker, first, limit, WORKER_AHEAD):
                return self._worker_lost()
            if not worker.in_flight and ahead is None:
                return 0
        if not worker.in_flight:
            assert ahead is not None
            return self._take_ahead(worker, ahead, generation)
        try:
            delta = worker.answer()  # the wait gives the interpreter to the other threads
        except (EOFError, OSError, pickle.UnpicklingError):
            return self._worker_lost()
        with self.lock:
            if generation != self.generation or self._worker is not worker:
                return 1  # started over meanwhile: the answer is for the old content
            _apply_delta(self.summaries, delta)
        return delta.count

    def _take_ahead(self, worker: SummaryWorker, ahead: SummaryWorker, generation: int) -> int:
        """The first worker has reached the second's range: join the second's answers on (``summary_split``)."""
        try:
            if self._merge is None:
                state = worker.episode_state()  # the true state at the range's first line
                with self.lock:
                    if generation != self.generation or self._worker is not worker:
                        return 1
                    self.summaries.episode_state = state
                    self._merge = RangeMerge(self.summaries, self._summary_line)
            delta = ahead.answer()
            runs = ahead.episode_state() if not ahead.in_flight else None
        except (EOFError, OSError, pickle.UnpicklingError):
            return self._worker_lost()
        with self.lock:
            merge = self._merge
            if generation != self.generation or self._worker is not worker or merge is None:
                return 1
            _apply_delta(self.summaries, merge.map(delta))
            self.split_lines += delta.count
            if runs is not None:  # the range is done: both workers go, the rest (growth) goes on from here
                self.summaries.episode_state = merge.final_state(runs)
                self._stop_worker(keep_state=False)
        return delta.count

    def _summary_line(self, i: int) -> bytes:
        """Line ``i`` as the summary pass splits the file (without its newline, a ``\\r`` kept)."""
        start, end = self.line_span(i)
        data = os.pread(self._fd, end - start, start)
        return data[:-1] if data.endswith(b"\n") else data

    def _worker_lost(self) -> int:
        """The worker died: the in-process pass cannot go on from its state, so summarize from the start again."""
        with self.lock:
            self.worker_min_bytes = None
            if self._fd < 0:
                return 0  # closed meanwhile (the worker was ended by ``close``)
            self._start_over(self.size)
        return 1

    def _stop_worker(self, *, keep_state: bool) -> None:
        """Let the worker go; with ``keep_state`` (all its answers taken) the open runs come back to this process."""
        ahead, self._ahead, self._merge = self._ahead, None, None
        if ahead is not None:
            ahead.close()
        worker = getattr(self, "_worker", None)
        if worker is None:
            return
        self._worker = None
        try:
            if keep_state and ahead is None and not worker.in_flight:  # (a range not joined: state lost)
                self.summaries.episode_state = worker.episode_state()
                keep_state = False
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        finally:
            worker.close()
        if keep_state:  # its state is lost: summarize again in-process
            self.worker_min_bytes = None
            self._start_over(self.size)
        elif len(self.summaries) >= len(self.ends):
            release_free_heap()  # the summary is complete: the heap's holes from growing the columns go back

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
        if self.scanned < self.size:
            self._maybe_start_worker(self.size)
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
            if self._worker is not None:
                with self.lock:
                    self._stop_worker(keep_state=True)  # everything summarized: the process is not kept idle
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
        with self.lock:
            self._stop_worker(keep_state=False)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TraceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
