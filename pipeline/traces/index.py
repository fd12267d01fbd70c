"""A line index of a (possibly growing) JSONL trace file, so viewers can open gigabytes at once and tail them.

Why it is built this way (see PERFORMANCE.md): the file is scanned in 1 MiB chunks for where its lines end
(``index_scan``); lines are read on demand with ``os.pread`` and parsed with orjson into small LRU caches
(``index_lines``), so memory stays bounded whatever the file size. The first chunk is indexed as soon as the file is
opened, so a viewer can draw its first screen before the scan ends; the end of the file can be read back before the
scan gets there (``index_tail``). Search reads bytes, not records (``index_find``).

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
import os
import pickle
import threading
from array import array
from pathlib import Path
from typing import Any, Unpack

from pipeline.traces import index_find, index_follow
from pipeline.traces.index_find import FindOptions
from pipeline.traces.index_follow import FileChange, FollowedFile, FollowOptions
from pipeline.traces.index_lines import LineError as LineError  # (re-exported, as are the next: viewers use them)
from pipeline.traces.index_lines import LineReader
from pipeline.traces.index_lines import LRUCache as LRUCache
from pipeline.traces.index_scan import LineEnds
from pipeline.traces.index_scan import numpy_or_none as _numpy
from pipeline.traces.index_tail import TAIL_BYTES, read_tail
from pipeline.traces.index_tail import TailLines as TailLines
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
        self.file = FollowedFile(self.path)
        self.lines = LineReader(self, cache_lines)
        self.worker_min_bytes = worker_min_bytes
        self._worker: SummaryWorker | None = None
        self._reset_state()
        self.size = self.file.size()
        if prime_bytes:
            self.scan_step(prime_bytes)
            self.summarize_step()

    def _reset_state(self) -> None:
        self._stop_worker(keep_state=False)
        self.line_ends = LineEnds(include_partial=self.include_partial, chunk_size=self.chunk_size)
        self.ends: array[int] = self.line_ends.ends  # the same array: the scan appends to it
        self.summaries = _Summaries()
        self.lines.clear()

    # -- reading -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ends)

    @property
    def fd(self) -> int:
        """The read descriptor of the file indexed (another one once the file was replaced; -1 once closed)."""
        return self.file.fd

    _fd = fd  # the summary hand-off below knows it by this name

    @property
    def scanned(self) -> int:
        """Bytes indexed: the end of the last line counted."""
        return self.line_ends.scanned

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
        return (ends[i - 1] if i > 0 else 0), ends[i]

    def line_at_offset(self, offset: int) -> int:
        """The line holding byte ``offset``."""
        return bisect.bisect_right(self.ends, offset)

    def line(self, i: int) -> bytes:
        """Line ``i`` (0-based) without its line ending; raises IndexError past the end (``LineReader.line``)."""
        return self.lines.line(i)

    def prefetch(self, first: int, last: int) -> None:
        """Read lines ``first..last`` (inclusive) with one ``pread`` into the line cache (``LineReader.prefetch``)."""
        self.lines.prefetch(first, last)

    def record(self, i: int) -> dict[str, Any] | LineError:
        """Line ``i`` parsed as a JSON object, or a ``LineError`` saying why it is not one (cached)."""
        return self.lines.record(i)

    def summary(self, i: int) -> LineSummary | None:
        """The summary of line ``i``, or None while the summary pass has not reached it."""
        return self.lines.summary(i)

    def line_flags(self, i: int) -> int:
        """The flags of line ``i``, from the summary or (ahead of the summary pass) the line alone."""
        return self.lines.flags(i)

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

    def read_tail(self, max_bytes: int = TAIL_BYTES) -> TailLines | None:
        """The last lines of the file, for a view that wants the end (End, follow) before the scan reached it
        (``index_tail.read_tail``)."""
        return read_tail(self, max_bytes)

    def find(self, needle: str, start: int, **options: Unpack[FindOptions]) -> int | None:
        """The first line from ``start`` containing ``needle``, ignoring ASCII case (``index_find.find``)."""
        return index_find.find(self, needle, start, **options)

    # -- scanning --------------------------------------------------------------------------------------------------
    def scan_step(self, max_bytes: int | None = None) -> int:
        """Index up to ``max_bytes`` more of the file (one chunk by default); returns the bytes consumed."""
        with self.lock:
            return self.line_ends.scan(self._fd, self.size, max_bytes)

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
        with self.lock:
            change, size = self.file.look_again(self.line_ends, self.size)
            if change in ("rotated", "truncated") or (change == "grown" and self.line_ends.partial_grown(size)):
                self._start_over(size)  # what was indexed is gone (or the "finished" last line is still written)
            elif change == "grown":
                self.size = size
            return change

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

    def let_worker_go(self) -> bool:
        """Let the summary worker go (its state comes back to this process); False when there is none."""
        if self._worker is None:
            return False
        with self.lock:
            self._stop_worker(keep_state=True)
        return True

    def run(self, stop: threading.Event, **options: Unpack[FollowOptions]) -> None:
        """The indexer loop (``index_follow.follow``): index everything, then follow the file until ``stop``."""
        index_follow.follow(self, stop, **options)

    def close(self) -> None:
        with self.lock:
            self._stop_worker(keep_state=False)
        self.file.close()

    def __enter__(self) -> TraceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
