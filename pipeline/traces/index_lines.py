"""The lines of an indexed trace file by number, as a viewer reads them: bytes, record, summary and badges.

A viewer draws a few hundred lines at a time out of millions: each is read with ``os.pread`` when first asked for and
kept in a bounded LRU cache (raw bytes, parsed records, badges worked out ahead of the summary pass), so memory stays
bounded whatever the file size. Cache keys carry the index's ``generation``: nothing read from the old content is
served once the file was truncated or replaced.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import orjson

from pipeline.problems import Problem
from pipeline.traces.index_scan import Offsets
from pipeline.traces.summary import _summarize_batch
from pipeline.traces.summary_columns import NO_ID, LineSummary, _Summaries

PARSED_LINES = 1024
"""Parsed lines kept: fewer than raw lines, since each is a tree of objects the garbage collector has to walk."""

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


def parse_line(raw: bytes, path: Path, i: int) -> dict[str, Any] | LineError:
    """Line ``i`` (0-based) of ``path`` as a JSON object, or a ``LineError`` saying why it is not one."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return LineError(str(path), i + 1, f"not valid JSON ({exc})")
    if not isinstance(obj, dict):
        return LineError(str(path), i + 1, f"not a JSON object (a {type(obj).__name__})")
    return obj


def line_alone_flags(i: int, raw: bytes) -> int:
    """The flags of line ``i`` worked out from the line alone (no thrash or deadlock: they need the ticks before)."""
    scratch = _Summaries(transient=True)
    _summarize_batch(scratch, i, [raw])
    return scratch.flags[0]


class LineSource(Protocol):
    """An open, indexed file (a ``TraceIndex``): ``ends[i]`` is the byte after line ``i``; summaries follow behind."""

    @property
    def path(self) -> Path: ...

    @property
    def fd(self) -> int: ...

    @property
    def ends(self) -> Offsets: ...

    @property
    def generation(self) -> int: ...

    @property
    def summaries(self) -> _Summaries: ...


class LineReader:
    """The lines of ``source`` by number: raw bytes and parsed records (cached), summaries, badges."""

    def __init__(self, source: LineSource, cache_lines: int) -> None:
        self.source = source
        self._raw: LRUCache[tuple[int, int], bytes] = LRUCache(cache_lines)
        self._parsed: LRUCache[tuple[int, int], dict[str, Any] | LineError] = LRUCache(min(cache_lines, PARSED_LINES))
        self._flags: LRUCache[tuple[int, int], int] = LRUCache(min(cache_lines, PARSED_LINES))

    def clear(self) -> None:
        self._raw.clear()
        self._parsed.clear()
        self._flags.clear()

    def line(self, i: int) -> bytes:
        """Line ``i`` (0-based) without its line ending; raises IndexError past the end."""
        source = self.source
        ends = source.ends
        if i < 0 or i >= len(ends):
            raise IndexError(f"line {i} out of range (0..{len(ends) - 1})")
        key = (source.generation, i)
        cached = self._raw.get(key)
        if cached is not None:
            return cached
        start = ends[i - 1] if i > 0 else 0
        data = os.pread(source.fd, ends[i] - start, start)
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
        source = self.source
        ends = source.ends
        first, last = max(0, first), min(last, len(ends) - 1)
        if first > last:
            return
        generation = source.generation
        missing = [i for i in range(first, last + 1) if self._raw.get((generation, i)) is None]
        if len(missing) < 2:
            return
        first, last = missing[0], missing[-1]
        begin = ends[first - 1] if first else 0
        data = os.pread(source.fd, ends[last] - begin, begin)
        if len(data) != ends[last] - begin:
            return  # the file shrank under us: the indexer will notice and start over
        parts = data.split(b"\n")
        for offset, raw in enumerate(parts[: last - first + 1]):
            self._raw.put((generation, first + offset), raw[:-1] if raw.endswith(b"\r") else raw)

    def record(self, i: int) -> dict[str, Any] | LineError:
        """Line ``i`` parsed as a JSON object, or a ``LineError`` saying why it is not one (cached)."""
        key = (self.source.generation, i)
        cached = self._parsed.get(key)
        if cached is not None:
            return cached
        result = parse_line(self.line(i), self.source.path, i)
        self._parsed.put(key, result)
        return result

    def summary(self, i: int) -> LineSummary | None:
        """The summary of line ``i``, or None while the summary pass has not reached it."""
        s = self.source.summaries
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

    def flags(self, i: int) -> int:
        """The flags of line ``i``: from the summary once the summary pass reached it, else worked out from the line
        alone (cached), so a screen far ahead of the pass (End on a big file) shows its badges at once.

        The line alone gives every mark but the two that need the ticks before it in the episode: thrash and
        deadlock from repeated failures or a window without progress; they appear when the pass arrives.
        """
        source = self.source
        s = source.summaries
        if 0 <= i < len(s):
            return s.flags[i]
        if i < 0 or i >= len(source.ends):
            return 0
        key = (source.generation, i)
        cached = self._flags.get(key)
        if cached is not None:
            return cached
        flags = line_alone_flags(i, self.line(i))
        self._flags.put(key, flags)
        return flags
