"""End before the scan got there: the last lines are read back from the end of the file and shown at once, with
their badges (from each line alone) and line numbers counted from the end; once the scan reaches the end, the view
is the whole file, the same rows as a view of the file fully indexed beforehand. The scan is held still (a real
indexer thread waiting on an event) so "before the scan ends" is certain, not a race."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from phasef_tui.app import PhasefApp
from phasef_tui.data_source import TraceFileSource
from phasef_tui.screens.traces import TracesScreen
from phasef_tui.trace_feed import FeedRows, LineSelection, TailRows, TraceFeed
from pipeline.traces.index import TraceIndex
from pipeline.traces.summary_columns import FLAG_DEADLOCK, FLAG_DEATH, FLAG_THRASH, FLAG_TRAP
from tests.tui_helpers import sample_records, start, tick, until
from widgets.trace_stream import TraceStream

SIZE = (120, 30)
LAST = "ZZLAST0001"
RUNS = FLAG_THRASH | FLAG_DEADLOCK
"""The two badges that need the ticks before a line (a run of failures, a window without progress): a line read
alone may show them differently until the summary pass gets there."""


def big_trace(path: Path, megabytes: float = 6.0) -> Path:
    """A few MB of episodes (every kind the badges show, from ``sample_records``), then a last episode whose last
    record is a death."""
    with open(path, "wb") as fh:
        copy = 0
        while fh.tell() < megabytes * (1 << 20):
            for rec in sample_records():
                fh.write(orjson.dumps({**rec, "episode": f"{rec['episode']}-{copy:05d}"}) + b"\n")
            copy += 1
        fh.write(orjson.dumps(start(LAST)) + b"\n")
        fh.write(orjson.dumps(tick(LAST, 0)) + b"\n")
        death = tick(LAST, 1, "death", error_class="Fatal", trap="fatal", progress=False)
        fh.write(orjson.dumps(death) + b"\n")
    return path


@pytest.fixture
def held_scan(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The indexer thread's scan steps wait until the event is set (the synchronous first chunk is not held)."""
    go = threading.Event()
    original = TraceIndex.scan_step

    def held(self: TraceIndex, max_bytes: int | None = None) -> int:
        if max_bytes is None:
            go.wait()
        return original(self, max_bytes)

    monkeypatch.setattr(TraceIndex, "scan_step", held)
    yield go
    go.set()


def stream_text(app: PhasefApp) -> list[str]:
    stream = app.screen.query_one(TraceStream)
    return [stream.render_line(y).text for y in range(stream.scrollable_content_region.height)]


def status_text(app: PhasefApp) -> str:
    return str(app.screen.query_one("#stream-status").render())


async def test_end_shows_the_last_record_with_its_badge_before_the_scan_ends(
    tmp_path: Path, held_scan: threading.Event
) -> None:
    path = big_trace(tmp_path / "big.jsonl")
    feed = TraceFeed(path, follow=False)
    app = PhasefApp(TraceFileSource(feed), blink=False)
    async with app.run_test(size=SIZE) as pilot:
        traces = app.screen
        assert isinstance(traces, TracesScreen)
        stream = traces.query_one(TraceStream)
        assert await until(pilot, lambda: stream.count > 0)
        assert stream.cursor == 0 and not stream.follow, "a finished file opens at its first line"
        await pilot.press("end")
        assert await until(pilot, lambda: LAST in stream_text(app)[-1])
        index = feed.index
        assert index.scanned < index.size // 10, "the scan is still held near the start"
        last_row = stream_text(app)[-1]
        assert last_row.split()[:2] == ["-1", "D·T···"], last_row  # from the end; death and trap badges
        assert stream.follow and stream.cursor == stream.count - 1
        assert "-1 from the end" in status_text(app)
        # every row of the tail is the record the whole file has there, but for the line number and the two badges
        # that need the ticks before (thrash, deadlock: they come with the summary pass)
        assert isinstance(stream.rows, TailRows)
        tail_rows = [stream.rows.row(k) for k in range(len(stream.rows))]

        held_scan.set()
        assert await until(pilot, lambda: index.complete and not isinstance(stream.rows, TailRows), timeout=30)
        assert await until(pilot, lambda: LAST in stream_text(app)[-1])
        total = len(index)
        assert stream.count == total and stream.cursor == total - 1 and stream.follow
        after = stream_text(app)
        assert after[-1].split()[0] == str(total)
        whole = FeedRows(feed, LineSelection(index))
        exact = [whole.row(total - len(tail_rows) + k) for k in range(len(tail_rows))]
        assert [dataclasses.replace(r, line=0, flags=r.flags & ~RUNS) for r in tail_rows] == [
            dataclasses.replace(r, line=0, flags=r.flags & ~RUNS) for r in exact
        ]
        assert any(r.flags & FLAG_THRASH for r in exact) and any(r.flags & FLAG_DEADLOCK for r in exact)
        assert [r.line for r in tail_rows] == list(range(-len(tail_rows), 0))

    # the same file indexed to the end first: End shows the same screen
    indexed = TraceFeed(path, follow=False)
    indexed.start()
    assert indexed.wait_indexed(30)
    other = PhasefApp(TraceFileSource(indexed), blink=False)
    async with other.run_test(size=SIZE) as pilot:
        other_stream = other.screen.query_one(TraceStream)
        assert await until(pilot, lambda: other_stream.count == total)
        await pilot.press("end")
        assert await until(pilot, lambda: stream_text(other) == after), (stream_text(other), after)


async def test_home_in_the_tail_goes_to_the_first_line(tmp_path: Path, held_scan: threading.Event) -> None:
    path = big_trace(tmp_path / "big.jsonl", 3.0)
    feed = TraceFeed(path, follow=False)
    app = PhasefApp(TraceFileSource(feed), blink=False)
    async with app.run_test(size=SIZE) as pilot:
        stream = app.screen.query_one(TraceStream)
        assert await until(pilot, lambda: stream.count > 0)
        first = stream_text(app)[0]
        await pilot.press("end")
        assert await until(pilot, lambda: isinstance(stream.rows, TailRows))
        await pilot.press("home")
        assert await until(pilot, lambda: not isinstance(stream.rows, TailRows))
        assert stream.cursor == 0 and stream_text(app)[0] == first
        assert feed.index.scanned < feed.index.size
        held_scan.set()  # (before the app stops the feed: the indexer thread must not be left waiting)


def test_read_tail_lines_and_flags(tmp_path: Path) -> None:
    path = big_trace(tmp_path / "t.jsonl", 1.0)
    whole = TraceIndex(path, include_partial=True, worker_min_bytes=None)
    while whole.work_step():
        pass
    index = TraceIndex(path, include_partial=True, prime_bytes=4096, worker_min_bytes=None)
    tail = index.read_tail(64 << 10)
    assert tail is not None and 100 < len(tail) < 400
    total = len(whole)
    for k in range(len(tail)):
        line = total - len(tail) + k
        assert tail.line(k) == whole.line(line)
        assert tail.record(k) == whole.record(line)
        assert tail.flags(k) & ~RUNS == whole.line_flags(line) & ~RUNS, line
    assert tail.flags(len(tail) - 1) == FLAG_DEATH | FLAG_TRAP
    assert tail.start == whole.line_span(total - len(tail))[0], "the tail begins on a line boundary"

    # a last line without its newline is a line of a finished file, not of a followed one
    with open(path, "ab") as fh:
        fh.write(b'{"kind": "tick", "episode": "torn"')
    finished = TraceIndex(path, include_partial=True, prime_bytes=4096, worker_min_bytes=None)
    followed = TraceIndex(path, include_partial=False, prime_bytes=4096, worker_min_bytes=None)
    torn, kept = finished.read_tail(64 << 10), followed.read_tail(64 << 10)
    assert torn is not None and kept is not None
    assert torn.line(len(torn) - 1) == b'{"kind": "tick", "episode": "torn"' and len(torn) == len(kept) + 1
    problem = torn.record(len(torn) - 1)
    assert not isinstance(problem, dict) and problem.line is None and "not valid JSON" in problem.reason
    # nothing to read back once the scan is at the end; no whole line in the bytes asked for
    while whole.work_step():
        pass
    assert whole.read_tail() is None
    assert index.read_tail(10) is None
    for ix in (whole, index, finished, followed):
        ix.close()
