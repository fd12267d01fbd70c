"""The summary pass of a ``TraceIndex`` in worker processes (``summary_worker``), with tens of megabytes left.

The first worker is started when the scan sees enough left to summarize, and is given the lines scanned so far while
the scan goes on (its answers wait in its pipe until they are read). Once the scan has reached the end of the file a
second worker takes the second half of what is left, from an empty state; its answers are joined on exactly
(``summary_split.RangeMerge``) when the first worker reaches its range. The workers are let go once everything is
summarized (the per-episode state comes back, so growth is summarized in the viewer's process from there on). A
worker that dies leaves no half-state: the index summarizes from the start again, in its own process.

Where no core is idle when the pass starts (``summary_local.IdleProbe``), no worker is started: the index summarizes
in its own process, ``WORKER_BATCH_BYTES`` at a time, straight into its summary (``local``). Processes would only
share the one core the session gets, and cost their start-up, pickles and join on top.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import replace
from typing import TYPE_CHECKING

from pipeline.traces import summary_native, summary_records
from pipeline.traces.heap import grow_by_remapping, release_free_heap
from pipeline.traces.index_scan import numpy_available, numpy_or_none
from pipeline.traces.summary_columns import NO_ID, _Summaries, append_column, compact_summaries, flag_lines_upto
from pipeline.traces.summary_local import probe_for_open
from pipeline.traces.summary_split import RangeMerge
from pipeline.traces.summary_worker import (
    COLUMNS,
    SummaryDelta,
    SummaryWorker,
)

if TYPE_CHECKING:
    from pipeline.traces.index import TraceIndex

WORKER_MIN_BYTES = 48 << 20
"""Bytes left to summarize that make a worker process (``summary_worker``) worth its start-up (~0.3 s)."""
WORKER_BATCH_BYTES = 4 << 20
"""Bytes of lines per batch asked of the worker; ``WORKER_AHEAD`` batches are asked ahead so it never waits."""
WORKER_AHEAD = 3
WORKER_SCAN_AHEAD = 256
"""Batches asked of the first worker while the newline scan goes on (~1 GB of lines; their answers, ~200 KB each,
wait in the worker until the scan is done): with the second worker on the other half from the start, the scan takes
longer than it did alone, and a first worker held back meanwhile made the pass wait for it."""


def _last_line_end(fd: int, size: int) -> int:
    """The byte just past the last newline of the first ``size`` bytes (0: none)."""
    end = size
    while end > 0:
        start = max(0, end - (1 << 16))
        j = os.pread(fd, end - start, start).rfind(b"\n")
        if j >= 0:
            return start + j + 1
        end = start
    return 0


def _line_start_from(fd: int, offset: int, end: int) -> int | None:
    """The first byte of the first line starting at or after ``offset``, if before ``end``."""
    pos = max(offset - 1, 0)
    if offset == 0:
        return 0
    while pos < end:
        data = os.pread(fd, min(1 << 16, end - pos), pos)
        j = data.find(b"\n")
        if j >= 0:
            start = pos + j + 1
            return start if start < end else None
        if not data:
            return None
        pos += len(data)
    return None


def apply_delta(s: _Summaries, delta: SummaryDelta) -> None:
    """Append a worker's batch to ``s``: names, chain lines and filter lines, then the columns (``kind`` last)."""
    np = numpy_or_none()
    first = delta.first
    # a worker numbers the names it meets after the state it was given: new here, in order (``map`` has renumbered
    # a second worker's)
    s.episodes.extend_new(delta.episode_names)
    s.chains.extend_new(delta.chain_names)
    s.chain_lines.new_unseen(len(delta.chain_names))
    s.chain_episode.frombytes(delta.chain_episodes)
    columns = dict(zip(COLUMNS, delta.columns, strict=True))
    native = summary_native.load()  # (one pass per column in C: numpy took several, one per filter flag)
    if native is not None:
        native.chain_spans(columns["chain"], first, s.chain_lines.first, s.chain_lines.last)
    else:
        chain = np.frombuffer(columns["chain"], dtype=np.int32)
        rows = np.flatnonzero(chain != NO_ID)
        if len(rows):
            numbers = chain[rows]
            chains, at_first = np.unique(numbers, return_index=True)
            at_last = len(numbers) - 1 - np.unique(numbers[::-1], return_index=True)[1]
            lines = rows + first
            s.chain_lines.add_spans(chains.tolist(), lines[at_first].tolist(), lines[at_last].tolist())
    for name, typecode in zip(COLUMNS, delta.typecodes, strict=True):
        append_column(s, name, typecode, columns[name])
    if native is not None:
        summary_native.flag_lines(native, s, first, columns["flags"])
    else:
        flags = np.frombuffer(columns["flags"], dtype=np.uint16)
        for flag, lines in flag_lines_upto(s, first + delta.count).items():
            rows = np.flatnonzero(flags & flag) + first
            lines.frombytes(rows.astype(np.int32 if lines.typecode == "i" else np.int64).tobytes())
    s.flagged_upto = first + delta.count


class SummaryWorkers:
    """The worker processes summarizing for one index (``min_bytes`` None: never)."""

    FIRST_SHARE = 0.4
    """The first worker's share of the bytes when the file is split on open. Under half: that worker starts behind
    the newline scan and is fed batch by batch, while the second reads its range at once; and the second's answers
    are joined on only once the first is done, so the first should end first. 1 GB in tmux, 4 runs each, summary
    done at 1/2: median 4.34-4.76 s (the first worker ran ~1.2 s alone); at 0.4: 4.02; at 1/3: 3.38-3.72; at 1/4:
    3.40. Since the first worker reads its batches into one buffer (``worker_read.BatchReader``) it is as fast a
    line as the second, and 1/3 left the second running alone at the end: headless passes over 1 GB, 3 runs
    interleaved, median 1.25 s at 1/3, 1.16 at 0.4, 1.13 at 0.45, 1.17 at 1/2 (8 runs more: 0.35-0.45 alike)."""

    SPLIT_MAX_BATCHES = 1024
    """The second worker's range is at most this many batches long (the first worker's share grows beyond)."""

    def __init__(self, index: TraceIndex, min_bytes: int | None) -> None:
        self.index = index
        self.min_bytes = min_bytes
        self.worker: SummaryWorker | None = None
        """The first worker process."""
        self.local = False
        """No core was idle when the pass was to start (``summary_local``): the index summarizes in its own process,
        ``WORKER_BATCH_BYTES`` at a time, straight into its summary, until ``finish_local``."""
        self.probe = probe_for_open()
        self.ahead: SummaryWorker | None = None
        """A second worker summarizing the second half of the file from an empty state (a byte range)."""
        self.ahead_start = 0
        """The first byte of the second worker's range (a line's first byte; the first worker stops there)."""
        self.ahead_first = -1
        """The line starting at ``ahead_start`` (-1 until the newline scan has got there)."""
        self.merge: RangeMerge | None = None
        self.split_lines = 0
        """Lines summarized by a second worker (for tests and benchmarks)."""

    def maybe_start(self, upto: int) -> None:
        """Start the worker when bytes ``upto`` leave enough to summarize (the scan calls this with the file size,
        so the worker's start-up overlaps the newline scan), and with enough for two, the second worker on the second
        half of the file at once. While the scan goes on, the first worker is given the lines scanned so far (up to
        ``WORKER_SCAN_AHEAD`` batches; it keeps its answers until they are read), so the summary overlaps the scan."""
        index, worker = self.index, self.worker
        if worker is not None:
            if index.scanned < index.size and self.merge is None:
                with index.lock:
                    # (a dead worker: the next answer says)
                    self._ask(worker, self._next_line(worker), self._limit(), WORKER_SCAN_AHEAD)
            return
        if self.min_bytes is None:
            return
        with index.lock:
            done = index.ends[len(index.summaries) - 1] if len(index.summaries) else 0
            if upto - done < self.min_bytes or not numpy_available() or not self.probe.ready():
                return  # (the probe judges a window of some 0.1 s: meanwhile the scan goes on)
            grow_by_remapping()  # (the columns grow with every answer)
            if not self.probe.spare_core():
                self.local, self.min_bytes = True, None
                return
            self.worker = SummaryWorker.start(index.path, index.summaries)
            if self.worker is None:
                self.min_bytes = None
                return
            if index.scanned < index.size:
                self._split_file(done)
        # numpy (to take the answers in) is imported only now, while the workers start (it took ~0.06 s, which
        # their start waited for): never on open, nor in the UI thread, nor under the lock the UI reads with
        if numpy_or_none() is None:  # (found, but it does not load)
            with index.lock:
                self.stop(keep_state=False)  # nothing was taken from them: the pass goes on here
                self.min_bytes = None

    def _split_file(self, done: int) -> None:
        """Give the second half of the file's complete lines after byte ``done`` to a second worker, now."""
        index = self.index
        assert self.min_bytes is not None
        end = _last_line_end(index.fd, index.size)
        if end - done < 2 * self.min_bytes:
            return
        middle = max(done + int((end - done) * self.FIRST_SHARE), end - self.SPLIT_MAX_BATCHES * WORKER_BATCH_BYTES)
        start = _line_start_from(index.fd, middle, end)
        if start is not None:
            self._start_ahead(start, end, -1)

    def _start_ahead(self, start: int, end: int, first: int) -> None:
        """A second worker for the lines of bytes ``[start, end)`` (``first``: the line at ``start``, -1 unknown)."""
        ahead = SummaryWorker.start(self.index.path, _Summaries())
        if ahead is None:
            return
        try:
            ahead.ask_range(start, end, WORKER_BATCH_BYTES)
        except OSError:
            ahead.close()
            return
        self.ahead, self.ahead_start, self.ahead_first = ahead, start, first

    def _ahead_line(self) -> int:
        """The first line of the second worker's range, once the newline scan has got there (else -1)."""
        if self.ahead_first < 0 and self.index.scanned >= self.ahead_start:
            self.ahead_first = self.index.ends.bisect_right(self.ahead_start)
        return self.ahead_first

    def _limit(self) -> int:
        """The first line not for the first worker: the second worker's first, or (none) the lines scanned."""
        scanned = len(self.index.ends)
        if self.ahead is None:
            return scanned
        first = self._ahead_line()
        return scanned if first < 0 else first

    def _next_line(self, worker: SummaryWorker) -> int:
        """The first line not yet asked of ``worker``."""
        return worker.in_flight[-1][0] + worker.in_flight[-1][1] if worker.in_flight else len(self.index.summaries)

    def _ask(self, worker: SummaryWorker, first: int, limit: int, ahead: int) -> bool:
        """Ask ``worker`` for batches from line ``first`` up to line ``limit`` (at most ``ahead`` in flight)."""
        ends = self.index.ends
        while len(worker.in_flight) < ahead and first < limit:
            start = ends[first - 1] if first else 0
            last = min(max(ends.bisect_left(start + WORKER_BATCH_BYTES, first, limit), first + 1), limit)
            try:
                worker.ask(first, start, ends[last - 1], last - first)
            except OSError:
                return False
            first = last
        return True

    def _maybe_split(self, first: int, total: int) -> None:
        """Once the scan is done (no second worker was started on open), give the second half of the lines not yet
        asked for to a second worker."""
        index = self.index
        if self.min_bytes is None or index.scanned < index.size or index.fd < 0:
            return
        ends = index.ends
        begin = ends[first - 1] if first else 0
        if total - first < 2 or ends[total - 1] - begin < 2 * self.min_bytes:
            return
        middle_byte = max((begin + ends[total - 1]) // 2, ends[total - 1] - self.SPLIT_MAX_BATCHES * WORKER_BATCH_BYTES)
        middle = ends.bisect_left(middle_byte, first, total)
        middle = min(max(middle, first + 1), total - 1)
        self._start_ahead(ends[middle - 1], ends[total - 1], middle)

    def step(self) -> int:
        """Take the next answer in (asking for more first); returns how many lines it summarized."""
        index, worker = self.index, self.worker
        assert worker is not None
        generation = index.generation
        with index.lock:
            total = len(index.ends)
            first = self._next_line(worker)
            if self.ahead is None and self.merge is None:
                self._maybe_split(first, total)
            ahead = self.ahead
            if not self._ask(worker, first, self._limit(), WORKER_AHEAD):
                return self._lost()
            if not worker.in_flight and ahead is None:
                return 0
            if not worker.in_flight and self.merge is None and first != self._ahead_line():
                return 0  # the scan has not reached the second worker's range yet
        if not worker.in_flight:
            assert ahead is not None
            return self._take_ahead(worker, ahead, generation)
        try:
            delta = worker.answer()  # the wait gives the interpreter to the other threads
        except (EOFError, OSError, pickle.UnpicklingError):
            return self._lost()
        with index.lock:
            if generation != index.generation or self.worker is not worker:
                return 1  # started over meanwhile: the answer is for the old content
            apply_delta(index.summaries, delta)
        return delta.count

    def _take_ahead(self, worker: SummaryWorker, ahead: SummaryWorker, generation: int) -> int:
        """The first worker has reached the second's range: join the second's answers on (``summary_split``)."""
        index = self.index
        try:
            if self.merge is None:
                state = worker.episode_state()  # the true state at the range's first line
                with index.lock:
                    if generation != index.generation or self.worker is not worker:
                        return 1
                    index.summaries.episode_state = state
                    self.merge = RangeMerge(index.summaries, self._summary_line)
            delta = ahead.answer_range()
            delta = replace(delta, first=delta.first + self.ahead_first)
            runs = ahead.episode_state() if delta.last else None
        except (EOFError, OSError, pickle.UnpicklingError):
            return self._lost()
        with index.lock:
            merge = self.merge
            if generation != index.generation or self.worker is not worker or merge is None:
                return 1
            apply_delta(index.summaries, merge.map(delta))
            self.split_lines += delta.count
            if runs is not None:  # the range is done: both workers go, the rest (growth) goes on from here
                index.summaries.episode_state = merge.final_state(runs)
                self.stop(keep_state=False)
        return delta.count

    def _summary_line(self, i: int) -> bytes:
        """Line ``i`` as the summary pass splits the file (without its newline, a ``\\r`` kept)."""
        start, end = self.index.line_span(i)
        data = os.pread(self.index.fd, end - start, start)
        return data[:-1] if data.endswith(b"\n") else data

    def _lost(self) -> int:
        """The worker died: the in-process pass cannot go on from its state, so summarize from the start again."""
        index = self.index
        with index.lock:
            self.min_bytes = None
            if index.fd < 0:
                return 0  # closed meanwhile (the worker was ended by ``close``)
            index.start_over(index.size)
        return 1

    def stop(self, *, keep_state: bool) -> None:
        """Let the workers go; with ``keep_state`` (all answers taken) the open runs come back to this process."""
        index = self.index
        ahead, self.ahead, self.merge = self.ahead, None, None
        self.ahead_first = -1
        if ahead is not None:
            ahead.close()
        worker = self.worker
        if worker is None:
            return
        self.worker = None
        try:
            if keep_state and ahead is None and not worker.in_flight:  # (a range not joined: state lost)
                index.summaries.episode_state = worker.episode_state()
                keep_state = False
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        finally:
            worker.close()
        if keep_state:  # its state is lost: summarize again in-process
            self.min_bytes = None
            index.start_over(index.size)
        elif len(index.summaries) >= len(index.ends):
            self._settle()

    def finish_local(self) -> bool:
        """Once a pass in this process (``local``) has summarized every line, do what a worker's leaving does: the
        columns cut to their exact size, the summary's caches dropped and the heap's free memory given back (the
        lines that follow are summarized a few at a time). False when there is no such pass to finish."""
        index = self.index
        if not self.local or index.scanned < index.size or len(index.summaries) < len(index.ends):
            return False
        self.local = False
        summary_records.clear_caches()
        self._settle()
        return True

    def _settle(self) -> None:
        """The summary is complete: its arrays cut to their exact size, and the heap's holes from growing them given
        back."""
        compact_summaries(self.index.summaries)
        release_free_heap()
