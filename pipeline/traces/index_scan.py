"""Where the lines of a growing file end, found by scanning it forward a chunk at a time (``TraceIndex`` holds one).

The end offset of every line is kept in ``Offsets``: 4 bytes a line (relative to the first end of its block of
65,536 lines), not the ~60 of a Python list, so the index of a file of millions of lines stays a few megabytes.
Big chunks are scanned with numpy, small ones (the first screen, a followed file's growth) with ``bytes.find``, which
needs no import.
"""

from __future__ import annotations

import bisect
import os
import sys
from array import array
from collections.abc import Iterator
from typing import Any

VECTOR_SCAN_BYTES = 256 << 10
"""Chunks at least this big are scanned for newlines with numpy (imported on first use, in the indexer thread, so
opening a file and drawing its first screen never waits for it)."""
VECTOR_STEP_BYTES = 8 << 20
"""Bytes per scan step when chunks are scanned with numpy: fewer steps, fewer hand-overs of the interpreter lock
between the indexer and the UI thread, so the end of a big file is reached sooner (End shows the last record)."""
_NUMPY: list[Any] = []


def _newline_ends(np: Any, data: bytes | memoryview, start: int) -> Any:
    """The offsets just past each newline of ``data`` (read at ``start``), an int64 numpy array: by the C loop's
    ``memchr`` where it is built (about 4x numpy's compare-and-nonzero, one pass over the bytes), else by numpy."""
    from pipeline.traces.summary_native import load

    native = load()
    if native is not None:
        return np.frombuffer(native.newline_ends(data, start), dtype=np.int64)
    positions = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    positions += start + 1
    return positions.astype(np.int64)


def numpy_available() -> bool:
    """numpy can be imported (found; not imported here, which takes ~0.06 s)."""
    if _NUMPY:
        return _NUMPY[0] is not None
    import importlib.util

    try:
        return importlib.util.find_spec("numpy") is not None
    except (ImportError, ValueError):
        return False


BLAS_THREADS_VARIABLE = "OPENBLAS_NUM_THREADS"
_BLAS_THREADS_CHOSEN = (BLAS_THREADS_VARIABLE, "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
"""Variables OpenBLAS takes its thread count from: any of them set is the user's choice, left to stand."""


def _import_numpy() -> Any:
    """numpy, with one BLAS thread where this process has not chosen otherwise.

    numpy's OpenBLAS starts a thread per core when it is loaded, and those threads spin for a while waiting for work:
    the import took ~0.17 s of CPU here against ~0.06 s with one thread, in a viewer's busiest second (its newline
    scan, the summary workers' start). The summary does no linear algebra. The variable is set only for the load
    (OpenBLAS reads it then) and removed again, so the processes this one starts (a training, the user's runner) see
    the environment they were given."""
    if "numpy" in sys.modules or any(name in os.environ for name in _BLAS_THREADS_CHOSEN):
        import numpy

        return numpy
    os.environ[BLAS_THREADS_VARIABLE] = "1"
    try:
        import numpy
    finally:
        os.environ.pop(BLAS_THREADS_VARIABLE, None)
    return numpy


def numpy_or_none() -> Any:
    """numpy, or None where it cannot be imported (the plain loop is used then)."""
    if not _NUMPY:
        try:
            numpy = _import_numpy()
        except ImportError:
            _NUMPY.append(None)
        else:
            _NUMPY.append(numpy if array("q").itemsize == numpy.dtype(numpy.int64).itemsize else None)
    return _NUMPY[0]


BLOCK_SHIFT = 16
"""Lines per block of ``Offsets``: ``2 ** BLOCK_SHIFT``."""
_BLOCK_MASK = (1 << BLOCK_SHIFT) - 1
_NARROW_MAX = 2**32 - 1


class Offsets:
    """Ascending byte offsets (the line ends), 4 bytes each: ``rel[i]`` is offset ``i`` less ``bases[i >> 16]``, the
    first offset of its block of 65,536. A block spanning 4 GiB or more (lines of 64 KiB on average) makes every
    offset 8 bytes wide from then on, the same layout with ``rel`` an ``array('q')``.

    Reads as a sequence (``len``, ``o[i]``, ``o[-1]``, ``bisect``); ``bisect_left`` / ``bisect_right`` are the fast
    forms. Appended by one thread while others read without a lock: a block's base is appended before its first
    offset, so every index below ``len`` is readable.
    """

    __slots__ = ("bases", "rel")

    def __init__(self) -> None:
        self.bases = array("q")
        self.rel: array[int] = array("I")

    def __len__(self) -> int:
        return len(self.rel)

    def __getitem__(self, i: int) -> int:
        rel = self.rel
        if i < 0:
            i += len(rel)
        return rel[i] + self.bases[i >> BLOCK_SHIFT]

    def __iter__(self) -> Iterator[int]:
        rel, bases = self.rel, self.bases
        for i in range(len(rel)):
            yield rel[i] + bases[i >> BLOCK_SHIFT]

    def tolist(self) -> list[int]:
        return list(self)

    def _widen(self) -> None:
        if self.rel.typecode != "q":
            self.rel = array("q", self.rel)

    def append(self, offset: int) -> None:
        rel = self.rel
        if not len(rel) & _BLOCK_MASK:
            self.bases.append(offset)
        delta = offset - self.bases[-1]
        if delta > _NARROW_MAX and rel.typecode != "q":
            self._widen()
            rel = self.rel
        rel.append(delta)

    def extend(self, offsets: list[int]) -> None:
        """Append ``offsets`` (ascending)."""
        done, total = 0, len(offsets)
        while done < total:
            n = len(self.rel)
            piece = offsets[done : done + (1 << BLOCK_SHIFT) - (n & _BLOCK_MASK)]
            if not n & _BLOCK_MASK:
                self.bases.append(piece[0])
            base = self.bases[-1]
            if piece[-1] - base > _NARROW_MAX:
                self._widen()
            self.rel.extend([v - base for v in piece])
            done += len(piece)

    def extend_numpy(self, np: Any, offsets: Any) -> None:
        """Append ``offsets``, an ascending numpy array of int64."""
        done = 0
        total = len(offsets)
        while done < total:
            n = len(self.rel)
            room = (1 << BLOCK_SHIFT) - (n & _BLOCK_MASK)
            piece = offsets[done : done + room]
            if not n & _BLOCK_MASK:
                self.bases.append(int(piece[0]))
            piece = piece - self.bases[-1]
            if int(piece[-1]) > _NARROW_MAX:
                self._widen()
            self.rel.frombytes(piece.astype(np.uint32 if self.rel.typecode == "I" else np.int64).tobytes())
            done += len(piece)

    def bisect_right(self, x: int, lo: int = 0, hi: int | None = None) -> int:
        """``bisect.bisect_right(self, x, lo, hi)``, searched in C (the blocks' bases, then one block)."""
        return self._bisect(bisect.bisect_right, x, lo, hi)

    def bisect_left(self, x: int, lo: int = 0, hi: int | None = None) -> int:
        """``bisect.bisect_left(self, x, lo, hi)``, searched in C."""
        return self._bisect(bisect.bisect_left, x, lo, hi)

    def _bisect(self, search: Any, x: int, lo: int, hi: int | None) -> int:
        bases = self.bases
        n = len(self.rel)  # (read before the bases: a base is appended before its block's first offset)
        hi = n if hi is None else min(hi, n)
        if lo >= hi:
            return lo
        block = min(search(bases, x) - 1, (n - 1) >> BLOCK_SHIFT)  # the first block whose first offset could be >= x
        if block < 0:
            found = 0
        else:
            first = block << BLOCK_SHIFT
            found = search(self.rel, x - bases[block], first, min(first + (1 << BLOCK_SHIFT), n))
        return min(max(found, lo), hi)


class LineEnds:
    """The end offsets of the lines of one file's content (``ends[i]``: the byte after line ``i``'s newline).

    A last line without its newline is counted only with ``include_partial`` (a finished file); a followed file's
    last line is left out until its newline arrives. Not locked: its owner scans and checks it under its own lock.
    """

    def __init__(self, *, include_partial: bool, chunk_size: int) -> None:
        self.include_partial = include_partial
        self.chunk_size = chunk_size
        self.ends = Offsets()
        self.scanned = 0
        """Bytes indexed: the end of the last line counted."""
        self.partial_counted = False
        self._buffer: bytearray | None = None
        """Where big chunks are read (``_read_big``)."""

    def scan(self, fd: int, size: int, max_bytes: int | None = None) -> int:
        """Index up to ``max_bytes`` more of the first ``size`` bytes (one chunk by default); returns the bytes
        consumed."""
        want = self.chunk_size if max_bytes is None else max_bytes
        if max_bytes is None and want >= VECTOR_SCAN_BYTES:
            want = max(want, VECTOR_STEP_BYTES)
        start = self.scanned
        if start >= size:
            return 0
        count = min(want, size - start)
        np = numpy_or_none() if count >= VECTOR_SCAN_BYTES else None
        data: bytes | memoryview
        if np is not None:  # newlines found in one vectorized pass: ~5x the speed of the loop below
            data = self._read_big(fd, count, start)
            if not data:
                return 0
            self.ends.extend_numpy(np, _newline_ends(np, data, start))
            if start + len(data) >= size:
                self._buffer = None  # (the end reached: the buffer goes; growth comes in small chunks)
        else:
            self._buffer = None  # (a small chunk: what is left, or a followed file's growth)
            data = os.pread(fd, count, start)
            if not data:
                return 0
            # bytes.find per line measured faster than split + accumulate for lines of a few hundred bytes
            find = data.find
            found: list[int] = []
            append = found.append
            j = find(b"\n")
            while j >= 0:
                append(start + j + 1)
                j = find(b"\n", j + 1)
            self.ends.extend(found)
        if self.ends and self.ends[-1] > self.scanned:
            self.scanned = self.ends[-1]
        else:  # no newline in the whole chunk
            nl = self._find_newline(fd, size, start + len(data)) if start + len(data) < size else None
            if nl is None:
                return self._count_partial(size)
            self.ends.append(nl + 1)  # a line longer than one chunk
            self.scanned = nl + 1
        return self.scanned - start

    def _read_big(self, fd: int, count: int, offset: int) -> memoryview:
        """``count`` bytes at ``offset`` (fewer at the end of the file), read into one buffer used again for the next
        big chunk: no fresh pages to fault in for each chunk (with big blocks mapped on their own, see
        ``heap.grow_by_remapping``, each new 8 MiB ``bytes`` would be). Valid until the next read."""
        buffer = self._buffer
        if buffer is None or len(buffer) < count:
            buffer = self._buffer = bytearray(count)
        view = memoryview(buffer)[:count]
        got = os.preadv(fd, [view], offset)
        return view[:got]

    def _find_newline(self, fd: int, size: int, offset: int) -> int | None:
        while offset < size:
            data = os.pread(fd, min(self.chunk_size, size - offset), offset)
            if not data:
                return None
            j = data.find(b"\n")
            if j >= 0:
                return offset + j
            offset += len(data)
        return None

    def _count_partial(self, size: int) -> int:
        """Count the unterminated last line when the file is finished; returns its size (0 if not counted)."""
        last = self.ends[-1] if self.ends else 0
        if self.include_partial and not self.partial_counted and size > last:
            self.ends.append(size)
            self.scanned = size
            self.partial_counted = True
            return size - last
        return 0

    def truncated(self, fd: int, size: int) -> bool:
        """The file, now ``size`` bytes, no longer holds the indexed lines: shorter, or the last indexed newline is
        gone (truncated and rewritten)."""
        last = self.ends[-1] if self.ends else 0
        if size < self.scanned or size < last:
            return True
        return not (last == 0 or self.partial_counted or os.pread(fd, 1, last - 1) == b"\n")

    def partial_grown(self, size: int) -> bool:
        """The last line, counted without its newline, has grown since (it was still being written)."""
        return self.partial_counted and size > (self.ends[-1] if self.ends else 0)
