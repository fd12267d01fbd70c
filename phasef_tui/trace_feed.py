"""A trace file as the TUI sees it: indexed (and followed) by a background thread, filtered, searched, chained.

The indexer thread only ever updates the ``TraceIndex``; it never posts a message per record. The UI pulls what it
needs at its frame rate (``LineSelection.update`` takes in newly summarized lines, ``TraceStream.sync`` takes in new
rows), so a flood of appended records costs the UI one cheap update per frame, not one per record.
"""

from __future__ import annotations

import bisect
import heapq
import threading
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from pipeline.traces.index import LineError, TailLines, TraceIndex
from pipeline.traces.summary_columns import FILTER_FLAGS
from pipeline.watch import FileWatch, stop_follower
from widgets.trace_stream import TraceRow

if TYPE_CHECKING:  # (imported where used: the Chains screen and the detail pane are not on the first screen)
    from widgets.record_detail import RecordView

ROW_CACHE = 2048
"""Chain catalogue rows kept (each one parses a few records)."""


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class _TickFields(TypedDict):
    episode: str | None
    tick: int | None
    actor: str | None
    outcome: str | None
    error_class: str | None
    recovery: str | None
    latency_s: float | None
    context_chars: int | None


def _tick_fields(rec: dict[str, Any]) -> _TickFields:
    """A record's ``widgets.trace_stream.TickFields`` (what a stream row and a chain step both show), typed."""
    return _TickFields(
        episode=_str(rec.get("episode")),
        tick=_int(rec.get("tick")),
        actor=_str(rec.get("actor")),
        outcome=_str(rec.get("outcome")),
        error_class=_str(rec.get("error_class")),
        recovery=_str(rec.get("recovery")),
        latency_s=_float(rec.get("latency_s")),
        context_chars=_int(rec.get("context_chars")),
    )


def schema_problems(obj: dict[str, Any]) -> tuple[str, ...]:
    """What the canonical schema says is wrong with a record, one line per field (empty when valid)."""
    from pydantic import ValidationError

    from pipeline.traces.schema import parse_record

    try:
        parse_record(obj)
    except ValidationError as exc:
        return tuple(
            f"schema: field '{'.'.join(str(p) for p in err['loc']) or 'record'}': {err['msg']}" for err in exc.errors()
        )
    except ValueError as exc:
        return (f"schema: {exc}",)
    return ()


class TraceFeed:
    """One trace file, its index and the thread that keeps the index up to date."""

    def __init__(self, path: Path, *, follow: bool, display_name: str | None = None) -> None:
        self.path = Path(path)
        self.follow = follow
        self.display_name = display_name or str(path)
        self.index = TraceIndex(self.path, include_partial=not follow)
        self.problems: list[str] = []
        self._caught_up: int | None = None
        self._stop = threading.Event()
        self._unfollow = threading.Event()
        self._thread: threading.Thread | None = None
        self.watch: FileWatch | None = None
        """Wakes the indexer when a followed file is written (watchfiles), else it polls."""

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            kwargs: dict[str, object] = {"follow": self.follow, "keep_following": self._keep_following}
            if self.follow:
                if self.watch is None:
                    self.watch = FileWatch(self.path)
                kwargs["wait_change"] = self.watch.wait
            self._thread = threading.Thread(
                target=self.index.run,
                args=(self._stop,),
                kwargs=kwargs,
                name="trace-indexer",
                daemon=True,
            )
            self._thread.start()

    def _keep_following(self) -> bool:
        return not self._unfollow.is_set()

    def stop_following(self) -> None:
        """The file is finished (its session ended): index to the end, then stop looking at it (no polling)."""
        self._unfollow.set()

    def resume_following(self) -> None:
        """The file may grow again (its session was resumed): follow it again."""
        if self._unfollow.is_set() and not self._stop.is_set():
            self._unfollow.clear()
            self.index.check_file()
            self.start()

    @property
    def settled(self) -> bool:
        """Nothing more will happen unless asked: the file is indexed to the end and no thread looks at it."""
        thread = self._thread
        following = self.follow and not self._unfollow.is_set()
        return not following and self.index.complete and (thread is None or not thread.is_alive())

    def stop(self) -> None:
        stop_follower(self._stop, self.watch, self._thread)
        self._thread = None
        self.index.close()

    def wait_indexed(self, timeout: float = 30.0) -> bool:
        """Block until the whole file is indexed and summarized (tests and benchmarks)."""
        done = threading.Event()

        def check() -> None:
            while not done.is_set():
                if self.index.complete:
                    done.set()
                    return
                self._stop.wait(0.005)

        watcher = threading.Thread(target=check, daemon=True)
        watcher.start()
        watcher.join(timeout)
        done.set()
        return self.index.complete

    @property
    def caught_up(self) -> bool:
        """The scan has reached the end of the file once (since the file last started over): from then on a
        followed view may chase the end without drifting through a half-scanned file."""
        index = self.index
        if self._caught_up != index.generation and index.scanned >= index.size:
            self._caught_up = index.generation
        return self._caught_up == index.generation

    @property
    def indexed_pct(self) -> float:
        size = self.index.size
        return 100.0 if size == 0 else min(100.0, 100.0 * self.index.scanned / size)

    @property
    def summarized_pct(self) -> float:
        total = len(self.index)
        return 100.0 if total == 0 else min(100.0, 100.0 * self.index.summarized / total)

    def counts(self) -> dict[str, int]:
        return {name: len(self.index.flag_lines(flag)) for name, flag in FILTER_FLAGS.items()}

    # -- one record, as the detail pane shows it --------------------------------------------------------------------
    def record_view(self, line: int) -> RecordView:
        from widgets.record_detail import RecordView

        rec = self.index.record(line)
        if isinstance(rec, LineError):
            raw = self.index.line(line).decode("utf-8", "replace")
            return RecordView(self.display_name, line, None, raw=raw, problems=(str(rec),))
        return RecordView(self.display_name, line, rec, problems=schema_problems(rec))


class LineSelection:
    """The lines a stream shows: all of them, or those whose summary has any of the chosen kinds."""

    def __init__(self, index: TraceIndex, kinds: frozenset[str] = frozenset()) -> None:
        unknown = kinds - set(FILTER_FLAGS)
        if unknown:
            raise ValueError(f"unknown trace filter(s): {', '.join(sorted(unknown))}")
        self.index = index
        self.kinds = kinds
        self._flags = [FILTER_FLAGS[k] for k in sorted(kinds)]
        self._reset()

    def _reset(self) -> None:
        self.generation = self.index.generation
        self.lines: array[int] = array("q")
        self._cursors = dict.fromkeys(self._flags, 0)
        self._upto = 0

    @property
    def filtered(self) -> bool:
        return bool(self._flags)

    def __len__(self) -> int:
        return len(self.lines) if self._flags else len(self.index)

    def line_at(self, pos: int) -> int:
        return self.lines[pos] if self._flags else pos

    def position_of(self, line: int) -> int:
        """Position of ``line`` in this selection, or of the nearest following line it holds (clamped)."""
        if not self._flags:
            return max(0, min(line, len(self.index) - 1))
        pos = bisect.bisect_left(self.lines, line)
        return max(0, min(pos, len(self.lines) - 1))

    def __contains__(self, line: object) -> bool:
        if not isinstance(line, int):
            return False
        if not self._flags:
            return 0 <= line < len(self.index)
        pos = bisect.bisect_left(self.lines, line)
        return pos < len(self.lines) and self.lines[pos] == line

    def update(self) -> bool:
        """Take in lines summarized since the last call; True when something changed (or the file restarted)."""
        if self.generation != self.index.generation:
            self._reset()
            return True
        if not self._flags:
            return False
        upto = self.index.summaries.flagged_upto
        if upto == self._upto:
            return False
        fresh: list[Iterable[int]] = []
        for flag in self._flags:
            arr = self.index.flag_lines(flag)
            start = self._cursors[flag]
            stop = bisect.bisect_left(arr, upto, start)
            if stop > start:
                fresh.append(arr[start:stop])
                self._cursors[flag] = stop
        self._upto = upto
        if not fresh:
            return False
        if len(fresh) == 1:
            self.lines.extend(array("q", fresh[0]))  # (the index's lists are 32-bit while the lines fit)
        else:
            previous = -1
            for line in heapq.merge(*fresh):
                if line != previous:
                    self.lines.append(line)
                    previous = line
        return True


def _row(line: int, rec: dict[str, Any] | LineError, flags: int, match: bool = False) -> TraceRow:
    """The stream row of a line's record (or of the reason it is not one)."""
    if isinstance(rec, LineError):
        return TraceRow(line=line, kind="?", flags=flags, problem=rec.reason, match=match)
    return TraceRow(
        line=line,
        kind=str(rec.get("kind", "?")),
        flags=flags,
        **_tick_fields(rec),
        chain=_str(rec.get("chain_id")),
        chain_role=_str(rec.get("chain_role")),
        match=match,
    )


class FeedRows:
    """``TraceRows`` for the stream widget: a selection of a feed's lines, rendered from their records."""

    def __init__(self, feed: TraceFeed, selection: LineSelection, search: str | None = None) -> None:
        self.feed = feed
        self.selection = selection
        self.search = search.lower().encode() if search else None

    def __len__(self) -> int:
        return len(self.selection)

    def prepare(self, first: int, last: int) -> None:
        """Read the lines behind rows ``first..last`` at once when they are consecutive (an unfiltered view)."""
        selection = self.selection
        if first <= last < len(selection):
            low, high = selection.line_at(first), selection.line_at(last)
            if high - low <= 4 * (last - first + 1):  # consecutive enough that one read beats several
                self.feed.index.prefetch(low, high)

    def row(self, pos: int) -> TraceRow:
        index = self.feed.index
        line = self.selection.line_at(pos)
        try:
            rec = index.record(line)
        except IndexError:
            return TraceRow(line=line, kind="?", problem="(file changed; re-reading)")
        flags = index.line_flags(line)
        match = bool(self.search) and self.search in index.line(line).lower()  # type: ignore[operator]
        return _row(line, rec, flags, match)


class TailRows:
    """``TraceRows`` of the last lines of a file read back from its end while the scan has not reached it (End on a
    big file shows its last records at once); their line numbers count from the end (``-1``: the last line)."""

    def __init__(self, tail: TailLines) -> None:
        self.tail = tail

    def __len__(self) -> int:
        return len(self.tail)

    def prepare(self, first: int, last: int) -> None:
        """Lines are read one by one (a screen of them, once)."""

    def row(self, pos: int) -> TraceRow:
        tail = self.tail
        line = pos - len(tail)
        rec = tail.record(pos)
        return _row(line, rec, tail.flags(pos))
