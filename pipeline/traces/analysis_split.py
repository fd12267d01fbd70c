"""``phasef trace stats`` on both cores: the second half of a large trace analyzed by a second process, joined
exactly, and the file's sha256 computed by a thread beside the analysis.

**The split.** The file is cut at a line start near its middle (the start of an ``episode_start`` record when one
is near). A forked process analyzes from there to the end while this one analyzes up to the cut. The analysis of
a record depends on the open episodes only (their chains, runs of failures, oscillation and progress state, the
growth fit); everything else is a count, a sum of integers or a list in file order. So when no episode is open at
the cut in this process, the second half analyzed from an empty state is exactly what one pass would have found
there, and the join is exact: counts and integer sums added, lists appended in order (its bad lines renumbered by
the lines before the cut), and the two float sums that depend on order (the growth fit's, the seconds to recover)
continued term by term over the second half's terms. When an episode is still open at the cut (episodes of
several runs interleaved, a cut inside an episode), the second process is stopped and this one reads on to the
end: one pass, as before. The second process's own failure (it died, its result did not arrive) ends the same way.

**The sha256** is computed over the same bytes (the file's size is taken once at the start; both halves read up
to it) by a thread reading its own copy: ``hashlib`` and ``read`` release the GIL for large buffers, so it costs
the analysis no time on a machine with a free core.

Only a process with one thread forks (a fork beside other threads can copy a held lock), and only on a machine
with two cores or more and a trace of ``SPLIT_MIN_BYTES`` or more.
"""

from __future__ import annotations

import gc
import hashlib
import os
import pickle
import signal
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from pipeline.fsio import open_regular
from pipeline.traces.analysis import _feed_range
from pipeline.traces.analyzer import TraceAnalyzer
from pipeline.traces.chains import ChainStore, Deadlock, DeathTrace, Oscillation, ThrashEvent
from pipeline.traces.growth import GrowthFit
from pipeline.traces.reader import BadLine

SPLIT_MIN_BYTES = 32 << 20
HASH_CHUNK = 1 << 20
_EPISODE_START = b'"kind":"episode_start"'
_LOOK_FOR_START = 4 << 20  # how far past the middle to look for an episode's start
K = TypeVar("K")


_Options = tuple[int, int, int | None]  # the deadlock window, thrash minimum and warm-up of the analysis


class _RecordingGrowth(GrowthFit):
    """The growth fit of the second half: also remembers each closed episode's terms, in order, for the join."""

    def __init__(self, warmup_override: int | None) -> None:
        super().__init__(warmup_override)
        self.terms: list[tuple[float, float]] = []

    def close(self, key: object) -> None:
        fit = self._open.get(key)
        if fit is not None and fit.n >= 2:
            self.terms.append((fit.m2x, fit.cxy))
        super().close(key)


@dataclass
class _Half:
    """What the second process found from the cut to the end (line numbers counted from the cut)."""

    records: int
    ticks: int
    bad_lines: list[BadLine]
    keys: set[tuple[str, str]]
    chains: ChainStore
    thrash: list[ThrashEvent]
    oscillations: list[Oscillation]
    deadlocks: list[Deadlock]
    deaths: list[DeathTrace]
    traps: dict[str, int]
    error_classes: dict[str, int]
    sums: list[int]
    counts: list[int]
    far_sums: dict[int, int]
    far_counts: dict[int, int]
    max_chars: int
    growth_terms: list[tuple[float, float]] = field(default_factory=list)


class _Hasher(threading.Thread):
    """sha256 of the first ``size`` bytes of a file, in a thread of its own."""

    def __init__(self, path: Path, size: int) -> None:
        super().__init__(name="trace-sha256", daemon=True)
        self.path = path
        self.size = size
        self.hexdigest = ""
        self.error: OSError | None = None

    def run(self) -> None:
        digest = hashlib.sha256()
        try:
            with open_regular(self.path) as fh:
                left = self.size
                while left > 0 and (chunk := fh.read(min(HASH_CHUNK, left))):
                    digest.update(chunk)
                    left -= len(chunk)
        except OSError as exc:
            self.error = exc
            return
        self.hexdigest = digest.hexdigest()

    def result(self) -> str:
        self.join()
        if self.error is not None:
            raise self.error
        return self.hexdigest


def split_point(path: Path, size: int) -> int:
    """Where to cut: the start of the first ``episode_start`` line a little past the middle, else the first line
    start past the middle; ``size`` when there is none (no cut)."""
    middle = size // 2
    with open_regular(path) as fh:
        fh.seek(middle)
        window = fh.read(min(_LOOK_FOR_START, max(0, size - middle)))
    first = window.find(b"\n")
    if first < 0:
        return size
    found = window.find(_EPISODE_START, first)
    if found >= 0:
        return middle + window.rfind(b"\n", first, found) + 1
    return middle + first + 1


def analyze_phasef(
    path: Path, analyzer: TraceAnalyzer, max_line_bytes: int, *, cut: int | None = None, workers: int | None = None
) -> tuple[str, bool]:
    """Analyze the canonical trace ``path`` into ``analyzer`` (not finished); returns its sha256 and whether the
    second half came from a second process.

    ``cut``: cut there (moved on to the next line start) instead of near the middle; ``workers``: 1 for one pass,
    2 to split whatever the size, None to decide (two cores, one thread, ``SPLIT_MIN_BYTES``).
    """
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
    if workers is None:
        workers = 2 if size >= SPLIT_MIN_BYTES and (os.cpu_count() or 1) >= 2 else 1
    if workers < 2 or threading.active_count() > 1 or not hasattr(os, "fork"):
        hasher = _Hasher(path, size)
        hasher.start()
        _feed_range(path, analyzer, max_line_bytes, None, end=size)
        return hasher.result(), False
    at = split_point(path, size) if cut is None else _next_line_start(path, min(max(cut, 0), size), size)
    found = analyzer.episodes
    options = (found.deadlock_window, found.thrash_min, analyzer.context.growth.warmup_override)
    child = _fork_half(path, at, size, max_line_bytes, options)
    hasher = _Hasher(path, size)
    hasher.start()
    try:
        lines = _feed_range(path, analyzer, max_line_bytes, None, end=at)
        half = child.take() if _clean_cut(analyzer) else None
    finally:
        child.stop()
    if half is None:
        _feed_range(path, analyzer, max_line_bytes, None, start=at, end=size, line_no=lines)
    else:
        _join(analyzer, half, lines)
    return hasher.result(), half is not None


def _next_line_start(path: Path, at: int, size: int) -> int:
    """``at`` if a line starts there, else the start of the next line (``size`` when there is none)."""
    if at == 0 or at >= size:
        return at
    with open_regular(path) as fh:
        fh.seek(at - 1)
        while chunk := fh.read(HASH_CHUNK):
            line = chunk.find(b"\n")
            if line >= 0:
                return min(at + line, size)
            at += len(chunk)
    return size


def _clean_cut(analyzer: TraceAnalyzer) -> bool:
    """No episode (and no growth fit) is open: what comes next is analyzed alike from an empty state."""
    return not analyzer.episodes.open and not analyzer.context.growth.open_fits


PIECE_BYTES = 1 << 20


class _Pieces:
    """The bytes of a pickle as the pipe gave them, read back by ``pickle.load`` (each piece let go once read: the
    bytes are not joined into one copy, and they shrink as the objects grow)."""

    def __init__(self) -> None:
        self._pieces: deque[bytes] = deque()
        self._at = 0

    def add(self, piece: bytes) -> None:
        self._pieces.append(piece)

    def _take(self, end: int) -> bytes:
        """The first piece's bytes from where reading stopped to ``end``; the piece goes once read to its end."""
        piece, at = self._pieces[0], self._at
        if end == len(piece):
            self._pieces.popleft()
            self._at = 0
            return piece if at == 0 else piece[at:]
        self._at = end
        return piece[at:end]

    def read(self, size: int = -1) -> bytes:
        out: list[bytes] = []
        while self._pieces and size != 0:
            piece = self._pieces[0]
            end = len(piece) if size < 0 else min(len(piece), self._at + size)
            if size > 0:
                size -= end - self._at
            out.append(self._take(end))
        return b"".join(out)

    def readinto(self, buffer: memoryview | bytearray) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        out: list[bytes] = []
        while self._pieces:
            piece = self._pieces[0]
            nl = piece.find(b"\n", self._at)
            out.append(self._take(len(piece) if nl < 0 else nl + 1))
            if nl >= 0:
                break
        return b"".join(out)


class _Child:
    """The forked process analyzing ``[start, end)``: ``take`` its ``_Half`` (None if it failed), ``stop`` it."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd
        self.done = False

    def take(self) -> _Half | None:
        """The second half: its pickle read whole (``_Pieces``), then unpickled once the second process has ended.
        The bytes are smaller than the objects they make, and the second process's memory is gone before those are
        made: the peak of the two processes together is lower than unpickling as the bytes come."""
        half: object = None
        pieces = _Pieces()
        try:
            while piece := os.read(self.fd, PIECE_BYTES):
                pieces.add(piece)
        finally:
            os.close(self.fd)
            self.fd = -1
        _, status = os.waitpid(self.pid, 0)
        self.done = True
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return None
        try:
            half = pickle.load(pieces)
        except Exception:  # a bad result: this process reads on alone, so the analysis is still exact
            half = None
        return half if isinstance(half, _Half) else None

    def stop(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.done:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.done = True


def _fork_half(path: Path, start: int, end: int, max_line_bytes: int, options: _Options) -> _Child:
    read_fd, write_fd = os.pipe()
    gc.freeze()  # (the child's collections then leave the objects it was born with, and their shared pages, alone)
    pid = os.fork()
    if pid == 0:  # the second process: analyze, send, exit without running the parent's clean-up
        code = 1
        try:
            os.close(read_fd)
            half = _analyze_half(path, start, end, max_line_bytes, options)
            with os.fdopen(write_fd, "wb") as out:  # streamed: the pickle is never whole in memory
                pickle.dump(half, out, pickle.HIGHEST_PROTOCOL)
            code = 0
        finally:
            os._exit(code)
    gc.unfreeze()  # (this process only: the child never gets here)
    os.close(write_fd)
    return _Child(pid, read_fd)


def _analyze_half(path: Path, start: int, end: int, max_line_bytes: int, options: _Options) -> _Half:
    """The second process's work: the records from ``start`` to ``end``, then every episode still open closed
    (what ``TraceAnalyzer.finish`` does at the end of the file)."""
    deadlock_window, thrash_min, warmup = options
    analyzer = TraceAnalyzer(str(path), deadlock_window=deadlock_window, thrash_min=thrash_min, warmup=warmup)
    growth = _RecordingGrowth(warmup)
    analyzer.context.growth = growth
    analyzer.episodes.growth = growth
    _feed_range(path, analyzer, max_line_bytes, None, start=start, end=end)
    found = analyzer.episodes
    found.close_all()
    for key in list(growth.open_fits):
        growth.close(key)
    context = analyzer.context
    return _Half(
        records=analyzer.records,
        ticks=analyzer.ticks,
        bad_lines=analyzer.bad_lines,
        keys=found.keys,
        chains=found.chains,
        thrash=found.thrash,
        oscillations=found.oscillations,
        deadlocks=found.deadlocks,
        deaths=found.deaths,
        traps=found.traps,
        error_classes=found.error_classes,
        sums=context.sums,
        counts=context.counts,
        far_sums=context.far_sums,
        far_counts=context.far_counts,
        max_chars=context.max,
        growth_terms=growth.terms,
    )


def _join(analyzer: TraceAnalyzer, half: _Half, lines: int) -> None:
    """Add the second half to ``analyzer`` (which stopped at the cut, after ``lines`` lines, with no episode open)."""
    analyzer.records += half.records
    analyzer.ticks += half.ticks
    analyzer.bad_lines.extend(
        replace(bad, line=bad.line + lines) if bad.line is not None else bad for bad in half.bad_lines
    )
    found = analyzer.episodes
    found.keys |= half.keys
    found.chains.extend(half.chains)
    found.thrash.extend(half.thrash)
    found.oscillations.extend(half.oscillations)
    found.deadlocks.extend(half.deadlocks)
    found.deaths.extend(half.deaths)
    _add_counts(found.traps, half.traps)
    _add_counts(found.error_classes, half.error_classes)
    context = analyzer.context
    for mine, theirs in ((context.sums, half.sums), (context.counts, half.counts)):
        if len(mine) < len(theirs):
            mine.extend([0] * (len(theirs) - len(mine)))
        for t, value in enumerate(theirs):
            if value:
                mine[t] += value
    _add_counts(context.far_sums, half.far_sums)
    _add_counts(context.far_counts, half.far_counts)
    context.max = max(context.max, half.max_chars)
    growth = context.growth
    for m2x, cxy in half.growth_terms:  # term by term, as one pass adds them (``GrowthFit.close``)
        growth._sxx += m2x
        growth._sxy += cxy


def _add_counts(into: dict[K, int], more: dict[K, int]) -> None:
    for key, n in more.items():
        into[key] = into.get(key, 0) + n
