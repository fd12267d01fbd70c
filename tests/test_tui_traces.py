"""The Traces screen driven with the keyboard (Pilot): follow mode and its "N new" marker, filters, search, the
detail pane, and the jump to a tick's recovery chain; on real trace files indexed by the real indexer thread."""

from __future__ import annotations

from pathlib import Path

import orjson
from textual.widgets import Static

from phasef_tui.app import PhasefApp
from phasef_tui.data_source import TraceFileSource
from phasef_tui.screens.chains import ChainsScreen
from phasef_tui.screens.traces import TracesScreen
from phasef_tui.trace_feed import TraceFeed
from tests.tui_helpers import append_records, many_ticks, plain_text, sample_records, tick, until, write_trace
from widgets.trace_stream import TraceStream

SIZE = (100, 30)


def make_app(path: Path, follow: bool = False) -> PhasefApp:
    return PhasefApp(TraceFileSource(TraceFeed(path, follow=follow)), blink=False)


def stream_text(app: PhasefApp) -> list[str]:
    stream = app.screen.query_one(TraceStream)
    return [stream.render_line(y).text for y in range(stream.scrollable_content_region.height)]


def screen(app: PhasefApp) -> TracesScreen:
    assert isinstance(app.screen, TracesScreen)
    return app.screen


async def test_follow_mode_new_marker_and_end(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "live.jsonl", many_ticks("e", 50))
    app = make_app(path, follow=True)
    async with app.run_test(size=SIZE) as pilot:
        stream = app.screen.query_one(TraceStream)
        assert await until(pilot, lambda: stream.count == 50)
        assert stream.follow and stream.cursor == 49
        append_records(path, many_ticks("e", 30, 50))
        assert await until(pilot, lambda: stream.count == 80 and stream.cursor == 79), "follow keeps the end"

        await pilot.press("up")
        assert not stream.follow and stream.cursor == 78
        append_records(path, many_ticks("e", 20, 80))
        assert await until(pilot, lambda: stream.count == 100)
        assert stream.cursor == 78, "a paused stream does not move"
        assert stream.new_rows == 20
        assert "20 new" in stream_text(app)[-1]

        await pilot.press("end")
        assert stream.follow and stream.cursor == 99 and stream.new_rows == 0
        assert "new" not in stream_text(app)[-1]
        await pilot.press("f")
        assert not stream.follow
        await pilot.press("f")
        assert stream.follow and stream.cursor == 99
        await pilot.press("v")
        assert not stream.follow, "opening the detail pane pauses the stream"
        append_records(path, many_ticks("e", 5, 100))
        assert await until(pilot, lambda: stream.new_rows == 5)
        await pilot.press("v")
        assert stream.follow and stream.cursor == 104, "closing it follows again"


async def test_filters_by_kind_and_back(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records())
    app = make_app(path, follow=True)
    async with app.run_test(size=SIZE) as pilot:
        traces = screen(app)
        stream = traces.query_one(TraceStream)
        assert await until(pilot, lambda: stream.count == 15 and traces.source.feed.index.complete)  # type: ignore[union-attr]
        await pilot.press("d")
        assert await until(pilot, lambda: stream.count == 2)
        assert traces.selection is not None and list(traces.selection.lines) == [13, 14]
        assert stream.follow and traces.current_line() == 14, "a followed stream shows the newest match"
        rows = stream_text(app)
        assert rows[0].lstrip().startswith("14 D") and "death" in rows[0]
        await pilot.press("d", "home", *["down"] * 7)
        assert traces.current_line() == 7 and not stream.follow
        await pilot.press("h", "s")  # thrash holds line 7, then schema errors join it
        assert traces.kinds == {"schema_error", "thrash"}
        assert await until(pilot, lambda: list(traces.selection.lines) == [2, 3, 7])  # type: ignore[union-attr]
        assert traces.current_line() == 7, "the record under the cursor stays under the cursor"
        await pilot.press("a")
        assert traces.kinds == frozenset() and stream.count == 15
        assert traces.current_line() == 7


async def test_search_next_and_previous(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records())
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        traces = screen(app)
        assert await until(pilot, lambda: traces.query_one(TraceStream).count == 15)
        await pilot.press("home", "slash", *"schemaviolation", "enter")
        assert await until(pilot, lambda: traces.current_line() == 2)
        await pilot.press("n")
        assert await until(pilot, lambda: traces.current_line() == 3)
        await pilot.press("n")
        assert await until(pilot, lambda: traces.search_note == "no more matches below")
        assert traces.current_line() == 3
        await pilot.press("N")
        assert await until(pilot, lambda: traces.current_line() == 2)
        assert "/schemaviolation" in str(traces.query_one("#stream-status", Static).render())


async def test_detail_pane_names_schema_problems(tmp_path: Path) -> None:
    broken = tick("e", 1)
    del broken["outcome"]
    path = write_trace(tmp_path / "t.jsonl", [tick("e", 0), broken, b"{oops\n"])  # type: ignore[list-item]
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        traces = screen(app)
        stream = traces.query_one(TraceStream)
        assert await until(pilot, lambda: stream.count == 3)
        assert "not valid JSON" in stream_text(app)[2]
        await pilot.press("down", "v")
        assert traces.detail_open and traces.current_line() == 1
        body = traces.query_one("#record-detail-body", Static)
        text = _plain(body)
        assert f"{path}:2" in text
        assert "schema: field 'outcome': Field required" in text
        assert '"tick": 1' in text
        await pilot.press("down")
        text = _plain(body)
        assert f"{path}:3" in text and "not valid JSON" in text and "{oops" in text
        await pilot.press("escape")
        assert not traces.detail_open


def _plain(widget: Static) -> str:
    """What a Static shows (its rich renderable), as plain text."""
    return plain_text(widget.content, 200)


async def test_jump_from_a_tick_to_its_recovery_chain_and_back(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records())
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        traces = screen(app)
        assert await until(pilot, lambda: traces.query_one(TraceStream).count == 15)
        await pilot.press("home", "down", "c")
        assert await until(pilot, lambda: isinstance(app.screen, TracesScreen))
        assert "not part of a recovery chain" in " ".join(str(n.message) for n in app._notifications)
        await pilot.press("down", "down", "c")  # line 3: the repair attempt of chain c1
        assert await until(pilot, lambda: isinstance(app.screen, ChainsScreen))
        chains = app.screen
        assert isinstance(chains, ChainsScreen)
        assert await until(pilot, lambda: (chains.chain, chains.position) == (0, 1))
        await pilot.press("right", "t")
        assert await until(pilot, lambda: isinstance(app.screen, TracesScreen))
        assert await until(pilot, lambda: traces.current_line() == 4)


async def test_a_finished_file_opens_at_its_first_line_a_followed_one_at_its_end(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", many_ticks("e", 200))
    for follow, line in ((False, 0), (True, 199)):
        app = make_app(path, follow=follow)
        async with app.run_test(size=SIZE) as pilot:
            traces = screen(app)
            stream = traces.query_one(TraceStream)
            assert await until(pilot, lambda s=stream: s.count == 200)  # type: ignore[misc]
            await pilot.pause(0.1)
            assert traces.current_line() == line and stream.follow == follow


async def test_file_truncated_while_viewed_starts_over(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", many_ticks("old", 40))
    app = make_app(path, follow=True)
    async with app.run_test(size=SIZE) as pilot:
        stream = app.screen.query_one(TraceStream)
        assert await until(pilot, lambda: stream.count == 40)
        write_trace(path, many_ticks("new", 5))
        assert await until(pilot, lambda: stream.count == 5)
        assert all("new" in row for row in stream_text(app)[:5])
        assert orjson.loads(screen(app).source.feed.index.line(0))["episode"] == "new"  # type: ignore[union-attr]
