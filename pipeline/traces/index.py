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

import threading
from array import array
from pathlib import Path
from typing import Any, Unpack

from pipeline.traces import index_find, index_follow, index_workers
from pipeline.traces.index_find import FindOptions
from pipeline.traces.index_follow import FileChange, FollowedFile, FollowOptions
from pipeline.traces.index_lines import LineError as LineError  # (re-exported, as are the next: viewers use them)
from pipeline.traces.index_lines import LineReader
from pipeline.traces.index_lines import LRUCache as LRUCache
from pipeline.traces.index_scan import LineEnds, Offsets
from pipeline.traces.index_tail import TAIL_BYTES, read_tail
from pipeline.traces.index_tail import TailLines as TailLines
from pipeline.traces.index_workers import WORKER_MIN_BYTES, SummaryWorkers
from pipeline.traces.summary import _summarize_batch
from pipeline.traces.summary_columns import NO_ID, LineSummary, _Summaries
from pipeline.traces.worker_read import BatchReader

CHUNK_SIZE = 1 << 20
"""Bytes read per scan step: large enough for bytes-level speed, small enough to stay responsive."""
PRIME_SIZE = 64 << 10
"""Bytes indexed synchronously on open, so the first screen needs no wait for the indexer."""
SUMMARY_BATCH_BYTES = 1 << 20
"""Bytes of lines summarized per step."""
CACHE_LINES = 4096
"""Raw lines kept; a screen shows at most a few hundred."""


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
        self.workers = SummaryWorkers(self, worker_min_bytes)
        self.reader = BatchReader(mapping=False)
        """Reads the lines summarized in this process, into one buffer used again (never mapped: a file cut short
        under a mapping raises SIGBUS, which would end the viewer)."""
        self._reset_state()
        self.size = self.file.size()
        if prime_bytes:
            self.scan_step(prime_bytes)
            self.summarize_step()

    def _reset_state(self) -> None:
        self.workers.stop(keep_state=False)
        self.line_ends = LineEnds(include_partial=self.include_partial, chunk_size=self.chunk_size)
        self.ends: Offsets = self.line_ends.ends  # the same object: the scan appends to it
        self.summaries = _Summaries()
        self.lines.clear()

    # -- reading -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ends)

    @property
    def fd(self) -> int:
        """The read descriptor of the file indexed (another one once the file was replaced; -1 once closed)."""
        return self.file.fd

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
        return self.ends.bisect_right(offset)

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
            return self.line_ends.scan(self.fd, self.size, max_bytes)

    # -- summaries -------------------------------------------------------------------------------------------------
    def summarize_step(self, max_bytes: int | None = None) -> int:
        """Summarize the next lines (about ``max_bytes`` of them); returns how many lines were summarized.

        With much left to summarize, a worker process does it (``summary_worker``), batches asked ahead; once the
        scan has reached the end of the file, a second worker takes the second half of what is left. Else the lines
        are summarized here, read into one buffer as one block: ``SUMMARY_BATCH_BYTES`` of them a step, or
        ``WORKER_BATCH_BYTES`` for a big file where no core was idle for a worker (``workers.local``).
        """
        self.workers.maybe_start(self.ends[-1] if self.ends else 0)
        if self.workers.worker is not None:
            return self.workers.step()
        with self.lock:
            s = self.summaries
            first = len(s)
            total = len(self.ends)
            if first >= total:
                return 0
            start = self.ends[first - 1] if first else 0
            if max_bytes is None:
                max_bytes = index_workers.WORKER_BATCH_BYTES if self.workers.local else SUMMARY_BATCH_BYTES
            limit = start + max_bytes
            last = self.ends.bisect_left(limit, first, total)
            last = max(last, first + 1)
            last = min(last, total)
            block = self.reader.read(self.fd, start, self.ends[last - 1], last - first)
            count = _summarize_batch(s, first, block)
            if count != last - first:  # other lines than the scan found there: the file was rewritten in place
                self.start_over(self.size)
                return 1
            if last >= total:
                self.reader = BatchReader(mapping=False)  # (its buffer goes until the file grows)
            return count

    # -- following -------------------------------------------------------------------------------------------------
    def check_file(self) -> FileChange:
        """Look at the file again: note growth, and start over when it was truncated, rewritten or replaced."""
        with self.lock:
            change, size = self.file.look_again(self.line_ends, self.size)
            if change in ("rotated", "truncated") or (change == "grown" and self.line_ends.partial_grown(size)):
                self.start_over(size)  # what was indexed is gone (or the "finished" last line is still written)
            elif change == "grown":
                self.size = size
            return change

    def start_over(self, size: int) -> None:
        """Index from scratch (the file changed under the index, or a summary worker's state was lost)."""
        self._reset_state()
        self.size = size
        self.generation += 1

    def work_step(self) -> bool:
        """One bounded piece of work (scan before summaries); False when there is nothing to do right now."""
        if self.scanned < self.size:
            self.workers.maybe_start(self.size)
        if self.scanned < self.size and self.scan_step():
            return True
        if self.summarized < len(self.ends):
            return self.summarize_step() > 0
        return False

    def let_worker_go(self) -> bool:
        """Let the summary worker go (its state comes back to this process), or finish a pass made in this process
        (``SummaryWorkers.finish_local``); False when there is neither."""
        with self.lock:
            if self.workers.worker is None:
                return self.workers.finish_local()
            self.workers.stop(keep_state=True)
        return True

    def run(self, stop: threading.Event, **options: Unpack[FollowOptions]) -> None:
        """The indexer loop (``index_follow.follow``): index everything, then follow the file until ``stop``."""
        index_follow.follow(self, stop, **options)

    def close(self) -> None:
        with self.lock:
            self.workers.stop(keep_state=False)
        self.file.close()

    def __enter__(self) -> TraceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
