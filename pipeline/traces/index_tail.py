"""The end of a trace file read back before the forward scan of its ``TraceIndex`` got there.

End and follow want the last records of a file at once; on a big file the scan needs seconds to reach them. The
last ``TAIL_BYTES`` are read with one ``pread`` and split into lines whose numbers are not known yet, counted from
the end; the viewer shows them until the scan arrives and hands over to the indexed lines.
"""

from __future__ import annotations

import os
from array import array
from typing import TYPE_CHECKING, Any

from pipeline.traces.index_lines import LineError, LineSource, line_alone_flags, parse_line

if TYPE_CHECKING:
    from pipeline.traces.index import TraceIndex

TAIL_BYTES = 2 << 20
"""Bytes read back from the end of a file for ``read_tail`` (thousands of lines: a screen needs a few dozen)."""


class TailLines:
    """The last lines of a file, found by reading back from its end before the forward scan got there.

    Their line numbers are not known until the scan arrives; they are counted from the end (``-1`` is the last
    line). ``start`` is the byte where the first of them begins, ``ends`` the end of each.
    """

    def __init__(self, source: LineSource, start: int, ends: array[int], size: int, generation: int) -> None:
        self.source = source
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
        data = os.pread(self.source.fd, self.ends[k] - begin, begin)
        return data.removesuffix(b"\n").removesuffix(b"\r")

    def record(self, k: int) -> dict[str, Any] | LineError:
        """Tail line ``k`` parsed (a problem has no line number: it is not known yet)."""
        rec = parse_line(self.line(k), self.source.path, 0)
        return LineError(rec.file, None, rec.reason, rec.field) if isinstance(rec, LineError) else rec

    def flags(self, k: int) -> int:
        """Badges of tail line ``k`` from the line alone (cached), as ``TraceIndex.line_flags`` gives them."""
        flags = self._flags.get(k)
        if flags is None:
            flags = self._flags[k] = line_alone_flags(-1, self.line(k))
        return flags


def read_tail(index: TraceIndex, max_bytes: int = TAIL_BYTES) -> TailLines | None:
    """The last lines of ``index``'s file (those in its last ``max_bytes``); None when the scan is already there or
    no whole line fits in ``max_bytes``."""
    with index.lock:
        size, generation, scanned = index.size, index.generation, index.scanned
        if scanned >= size:
            return None
        begin = max(scanned, size - max_bytes)
        data = os.pread(index.fd, size - begin, begin)
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
    if index.include_partial and last < size:
        ends.append(size)
    if not ends:
        return None
    return TailLines(index, begin + first, ends, size, generation)
