"""Text search over the lines of a ``TraceIndex``: bytes, not records, so a search of gigabytes takes seconds.

Whole lines are read a chunk at a time (``chunk_size`` bytes, cut on line boundaries with the line ends) and searched
lowercased for the lowercased needle: no parsing, and a match never spans lines since the needle holds no newline.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict, Unpack

from pipeline.traces.index_scan import Offsets

if TYPE_CHECKING:
    from pipeline.traces.index import TraceIndex

Accept = Callable[[int], bool] | None
Cancelled = Callable[[], bool] | None


class FindOptions(TypedDict, total=False):
    """Which way ``find`` searches and what it skips."""

    forward: bool
    """Search towards the end (the default), else towards the start."""
    accept: Accept
    """Asked of each matching line; False rejects it (a filter) and the search goes on."""
    cancelled: Cancelled
    """Asked before each chunk; True ends the search with None."""


def find(index: TraceIndex, needle: str, start: int, **options: Unpack[FindOptions]) -> int | None:
    """The first line from ``start`` (inclusive, in the given direction) containing ``needle``, ignoring ASCII case."""
    pattern = needle.lower().encode()
    if not pattern or b"\n" in pattern:
        return None
    search = _forward if options.get("forward", True) else _backward
    accept, cancelled = options.get("accept"), options.get("cancelled")
    return search(index.fd, index.ends, index.chunk_size, pattern, start, accept, cancelled)


def _forward(
    fd: int, ends: Offsets, chunk: int, pattern: bytes, start: int, accept: Accept, cancelled: Cancelled
) -> int | None:
    total = len(ends)
    i = max(0, start)
    while i < total:
        if cancelled is not None and cancelled():
            return None
        begin = ends[i - 1] if i else 0
        j = min(max(ends.bisect_left(begin + chunk, i, total), i + 1), total)
        data = os.pread(fd, ends[j - 1] - begin, begin).lower()
        pos = data.find(pattern)
        while pos >= 0:
            line = ends.bisect_right(begin + pos)
            if accept is None or accept(line):
                return line
            pos = data.find(pattern, ends[line] - begin)
        i = j
    return None


def _backward(
    fd: int, ends: Offsets, chunk: int, pattern: bytes, start: int, accept: Accept, cancelled: Cancelled
) -> int | None:
    i = min(start, len(ends) - 1)
    while i >= 0:
        if cancelled is not None and cancelled():
            return None
        end = ends[i]
        j = min(ends.bisect_right(end - chunk, 0, i), i)
        begin = ends[j - 1] if j else 0
        data = os.pread(fd, end - begin, begin).lower()
        pos = data.rfind(pattern)
        while pos >= 0:
            line = ends.bisect_right(begin + pos)
            if accept is None or accept(line):
                return line
            line_start = (ends[line - 1] if line else 0) - begin
            pos = data.rfind(pattern, 0, line_start) if line_start > 0 else -1
        i = j - 1
    return None
