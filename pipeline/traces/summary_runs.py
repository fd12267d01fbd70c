"""A per-line column of the summary whose value stays the same for long runs of lines: the episode of each line.

An episode's records mostly follow one another (a 1 GB trace: 59,409 episodes over 2,213,558 lines), so the column
keeps the first line of each run and its value: 8 bytes a run, ~0.5 MB instead of ~9 MB. Interleaved episodes make
short runs; once the runs would take more room than 4 bytes a line, the column turns into the plain ``array('i')``
for good. It reads and is appended like that array (``col[i]``, ``len``, ``extend`` with a value per line,
``frombytes``/``tobytes``/``bytes()`` as dense int32, ``del col[:]``), so the summary pass, its workers and their
deltas are unchanged.

Threads: one thread appends; others may read lines below ``len`` meanwhile (a run's value is appended before its
first line, the dense array is complete before it is set, and ``len`` goes last).
"""

from __future__ import annotations

import bisect
import struct
from array import array
from collections.abc import Iterable
from typing import Any

from pipeline.traces.index_scan import numpy_or_none
from pipeline.traces.summary_compact import INT32_MAX, CompactColumn

_INT32 = struct.Struct("=i")
DENSE_SLACK = 4096
"""The runs may take this many entries more than half the lines before the column turns dense."""


class RunColumn(CompactColumn):
    """Per-line int32 values stored as runs (first line, value), or densely once runs are short."""

    __slots__ = ("_store",)

    def __init__(self) -> None:
        super().__init__()
        self._store: tuple[array[int], array[int]] | array[int] = (array("i"), array("i"))
        """(first line of each run ascending, 64-bit past line 2**31; its value), or every line's value once the
        column has turned dense. One attribute, replaced whole: a reader takes one consistent snapshot of it."""

    @property
    def dense(self) -> bool:
        return not isinstance(self._store, tuple)

    # --- appending ------------------------------------------------------------------------------------------
    def _append_runs(self, starts: Any, values: Any, end: int, np: Any = None) -> None:
        store = self._store
        assert isinstance(store, tuple)
        runs, run_values = store
        if len(starts):
            if int(starts[-1]) > INT32_MAX and runs.typecode != "q":
                runs = array("q", runs)
                self._store = (runs, run_values)
            if np is None:
                run_values.extend(values)
                runs.extend(starts)
            else:
                run_values.frombytes(values.astype(np.int32).tobytes())
                runs.frombytes(starts.astype(np.int32 if runs.typecode == "i" else np.int64).tobytes())
        if 2 * len(run_values) > end + DENSE_SLACK:
            self._store = _dense(runs, run_values, 0, end)  # complete before it is seen; the runs let go
        self._len = end

    def extend(self, values: Iterable[int]) -> None:
        """Append one value per line."""
        dense_values = values if isinstance(values, list) else list(values)
        base = self._len
        store = self._store
        if not isinstance(store, tuple):
            store.extend(dense_values)
            self._len = base + len(dense_values)
            return
        run_values = store[1]
        prev: int | None = run_values[-1] if len(run_values) else None
        starts: list[int] = []
        new_values: list[int] = []
        for line, value in enumerate(dense_values, base):
            if value != prev:
                starts.append(line)
                new_values.append(value)
                prev = value
        self._append_runs(starts, new_values, base + len(dense_values))

    def frombytes(self, data: bytes) -> None:
        """Append dense int32 values given as bytes (a worker's delta): the runs found in C where the summary's C
        loop is built, else with numpy."""
        store = self._store
        if not isinstance(store, tuple):
            store.frombytes(data)
            self._len += len(data) // store.itemsize
            return
        native = _native()
        if native is not None:
            base, count = self._len, len(data) // 4
            if not count:
                return
            runs, run_values = store
            code = "q" if base + count - 1 > INT32_MAX else runs.typecode
            starts, values = native.value_runs(data, base, run_values[-1] if len(run_values) else None, code)
            if code != runs.typecode:
                runs = array("q", runs)
                self._store = (runs, run_values)
            run_values.frombytes(values)  # (a run's value before its first line)
            runs.frombytes(starts)
            self._append_runs((), (), base + count)
            return
        np = numpy_or_none()
        if np is None:
            self._extend_bytes(data)
            return
        values = np.frombuffer(data, dtype=np.int32)
        if not len(values):
            return
        base = self._len
        run_values = store[1]
        starts = np.flatnonzero(values[1:] != values[:-1]) + 1
        if not len(run_values) or int(values[0]) != run_values[-1]:
            starts = np.concatenate((np.zeros(1, dtype=starts.dtype), starts))
        self._append_runs(starts + base, values[starts], base + len(values), np)

    def clear(self) -> None:
        self._len = 0
        self._store = (array("i"), array("i"))

    def compact(self) -> None:
        """Arrays copied to their exact size."""
        store = self._store
        if isinstance(store, tuple):
            self._store = (array(store[0].typecode, store[0]), array("i", store[1]))
        else:
            self._store = array("i", store)

    # --- reading --------------------------------------------------------------------------------------------
    def _value(self, index: int) -> int:
        store = self._store
        if isinstance(store, tuple):
            return store[1][bisect.bisect_right(store[0], index) - 1]
        return store[index]

    def _dense(self, start: int, stop: int) -> array[int]:
        store = self._store
        if isinstance(store, tuple):
            return _dense(store[0], store[1], start, stop)
        return store[start:stop]

    def nbytes(self) -> int:
        store = self._store
        if isinstance(store, tuple):
            return store[0].itemsize * len(store[0]) + store[1].itemsize * len(store[1])
        return store.itemsize * len(store)


def _dense(starts: array[int], values: array[int], start: int, stop: int) -> array[int]:
    """Lines ``start..stop`` of the runs as a dense ``array('i')``."""
    out = array("i")
    if stop <= start:
        return out
    k = bisect.bisect_right(starts, start) - 1
    pieces = []
    line = start
    runs = len(starts)
    while line < stop:
        end = min(starts[k + 1], stop) if k + 1 < runs else stop
        pieces.append(_INT32.pack(values[k]) * (end - line))
        line = end
        k += 1
    out.frombytes(b"".join(pieces))
    return out


def _native() -> Any:
    """The summary's C module, or None (``summary_native.load``; imported here: that module imports this one)."""
    from pipeline.traces.summary_native import load

    return load()
