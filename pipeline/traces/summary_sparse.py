"""A per-line column of the summary that is mostly empty (``NO_ID``): the recovery chain of each line.

Most lines are in no chain (a 1 GB trace: 404,614 of 2,213,558 lines are), so instead of 4 bytes a line the column
keeps the lines that are in one (ascending) and their chain numbers: 8 bytes a chained line, ~3.5 MB instead of
~9 MB. It reads and is appended like the ``array('i')`` it replaces (``col[i]``, ``len``, ``extend`` with a value
per line, ``frombytes``/``tobytes``/``bytes()`` as dense int32, ``del col[:]``), so the summary pass, its workers and
their deltas are unchanged.

Threads: one thread appends; others may read lines below ``len`` meanwhile (values are appended before their lines,
and ``len`` last).
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable
from typing import Any

from pipeline.traces.index_scan import numpy_or_none
from pipeline.traces.summary_compact import INT32_MAX, CompactColumn

NO_ID = -1
SCAN_NUMPY = 4096
"""Chained lines in a window past which ``lines_with`` looks with numpy."""


class SparseColumn(CompactColumn):
    """Per-line int32 values, ``NO_ID`` for most lines, stored as (line, value) pairs of the other lines."""

    __slots__ = ("rows", "values")

    def __init__(self) -> None:
        super().__init__()
        self.rows: array[int] = array("i")
        """Lines whose value is not ``NO_ID``, ascending (64-bit past line 2**31)."""
        self.values = array("i")

    # --- appending ------------------------------------------------------------------------------------------
    def _rows_for(self, last_line: int) -> array[int]:
        rows = self.rows
        if last_line > INT32_MAX and rows.typecode != "q":
            rows = self.rows = array("q", rows)
        return rows

    def extend(self, values: Iterable[int]) -> None:
        """Append one value per line (``NO_ID`` for none)."""
        base = self._len
        dense = values if isinstance(values, list) else list(values)
        picked = [line for line, value in enumerate(dense, base) if value != NO_ID]
        if picked:
            rows = self._rows_for(picked[-1])
            self.values.extend([dense[line - base] for line in picked])
            rows.extend(picked)
        self._len = base + len(dense)

    def frombytes(self, data: bytes) -> None:
        """Append dense int32 values given as bytes (a worker's delta): picked out in C where the summary's C loop
        is built, else with numpy."""
        native = _native()
        if native is not None:
            base, count = self._len, len(data) // 4
            code = "q" if base + count - 1 > INT32_MAX else self.rows.typecode
            picked, values = native.sparse_rows(data, base, code)
            if values:
                rows = self._rows_for(base + count - 1) if code == "q" else self.rows
                self.values.frombytes(values)
                rows.frombytes(picked)
            self._len = base + count
            return
        np = numpy_or_none()
        if np is None:
            self._extend_bytes(data)
            return
        base = self._len
        values = np.frombuffer(data, dtype=np.int32)
        picked = np.flatnonzero(values != NO_ID)
        if len(picked):
            rows = self._rows_for(base + int(picked[-1]))
            self.values.frombytes(values[picked].tobytes())
            rows.frombytes((picked + base).astype(np.int32 if rows.typecode == "i" else np.int64).tobytes())
        self._len = base + len(values)

    def clear(self) -> None:
        self._len = 0
        self.rows = array("i")
        self.values = array("i")

    def compact(self) -> None:
        """Arrays copied to their exact size (values first: a reader finds every row's value)."""
        self.values = array(self.values.typecode, self.values)
        self.rows = array(self.rows.typecode, self.rows)

    # --- reading --------------------------------------------------------------------------------------------
    def _value(self, index: int) -> int:
        rows = self.rows
        k = bisect.bisect_left(rows, index)
        if k < len(rows) and rows[k] == index:
            return self.values[k]
        return NO_ID

    def _dense(self, start: int, stop: int) -> array[int]:
        dense = array("i", [NO_ID]) * (stop - start)
        rows = self.rows
        lo = bisect.bisect_left(rows, start)
        hi = bisect.bisect_left(rows, stop)
        for line, value in zip(rows[lo:hi], self.values[lo:hi], strict=True):
            dense[line - start] = value
        return dense

    def lines_with(self, value: int, first: int, last: int) -> array[int]:
        """The lines from ``first`` to ``last`` (inclusive) holding ``value``, ascending, as a new ``array('q')``."""
        rows = self.rows
        lo = bisect.bisect_left(rows, first)
        hi = bisect.bisect_right(rows, last)
        if hi <= lo:
            return array("q")
        lines = rows[lo:hi]
        values = self.values[lo:hi]
        if hi - lo > SCAN_NUMPY and (np := numpy_or_none()) is not None:
            wide = np.int32 if lines.typecode == "i" else np.int64
            found = np.frombuffer(lines, dtype=wide)[np.frombuffer(values, dtype=np.int32) == value]
            return array("q", found.astype(np.int64).tobytes())
        return array("q", [line for line, v in zip(lines, values, strict=True) if v == value])

    def nbytes(self) -> int:
        return self.rows.itemsize * len(self.rows) + self.values.itemsize * len(self.values)


def _native() -> Any:
    """The summary's C module, or None (``summary_native.load``; imported here: that module imports this one)."""
    from pipeline.traces.summary_native import load

    return load()
