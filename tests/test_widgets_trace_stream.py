"""The trace stream widget on its own: row rendering, follow mode, the "N new" marker, cursor keys, mouse wheel."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual import events
from textual.app import App, ComposeResult

from pipeline.traces.summary_columns import FLAG_DEATH, FLAG_RECOVERED, FLAG_RECOVERY, FLAG_SCHEMA_ERROR
from widgets.trace_stream import TraceRow, TraceStream, badges, format_row
from widgets.virtual_list import VirtualList


@dataclass
class ListRows:
    """Rows held in a list (the widget only needs ``len`` and ``row``)."""

    rows: list[TraceRow] = field(default_factory=list)
    prepared: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, pos: int) -> TraceRow:
        return self.rows[pos]

    def prepare(self, first: int, last: int) -> None:
        self.prepared.append((first, last))

    def grow(self, n: int) -> None:
        start = len(self.rows)
        self.rows.extend(
            TraceRow(line=i, kind="tick", episode="ep", tick=i, outcome="ok") for i in range(start, start + n)
        )


def test_row_rendering() -> None:
    row = TraceRow(
        line=41,
        kind="tick",
        flags=FLAG_RECOVERY | FLAG_RECOVERED,
        episode="episode-000012",
        tick=7,
        actor="repair",
        outcome="ok",
        chain="c3",
        chain_role="recovered",
        recovery="schema_repair",
        latency_s=1.5,
        context_chars=4321,
    )
    wide = format_row(row, 5, 120).plain
    assert wide.startswith("   42 ·R···· episode-000012 t7    repair   ok")
    assert "c3:recovered" in wide and "1.50s" in wide and "4,321c" in wide and wide.endswith("schema_repair")
    narrow = format_row(row, 5, 80).plain
    assert "1.50s" not in narrow and "de-000012" in narrow, "narrow rows keep the end of the episode id"
    assert format_row(TraceRow(line=0, kind="episode_start", episode="e"), 3).plain.endswith("▶ episode start")
    end = format_row(TraceRow(line=1, kind="episode_end", episode="e", outcome="death", flags=FLAG_DEATH), 3).plain
    assert "D·····" in end and end.endswith("■ episode end death")
    bad = format_row(TraceRow(line=2, kind="?", problem="not valid JSON\n(line 3)"), 3).plain
    assert bad.endswith("not valid JSON (line 3)")
    assert badges(FLAG_DEATH | FLAG_SCHEMA_ERROR).plain == "D··S··"


class StreamApp(App[None]):
    def __init__(self, rows: ListRows) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        yield TraceStream(self.rows, id="stream")


async def test_follow_new_marker_and_keys() -> None:
    rows = ListRows()
    rows.grow(30)
    app = StreamApp(rows)
    async with app.run_test(size=(60, 12)) as pilot:
        stream = app.query_one(TraceStream)
        stream.focus()
        stream.sync()
        await pilot.pause()
        assert stream.count == 30 and stream.cursor == 29 and stream.follow
        rows.grow(5)
        stream.sync()
        assert stream.cursor == 34
        page = stream.scrollable_content_region.height - 1
        await pilot.press("pageup")
        assert not stream.follow and stream.cursor == 34 - page
        rows.grow(7)
        stream.sync()
        assert stream.new_rows == 7 and stream.cursor == 34 - page
        last = stream.render_line(stream.scrollable_content_region.height - 1).text
        assert "7 new" in last and "End to follow" in last
        await pilot.press("end")
        assert stream.follow and stream.new_rows == 0 and stream.cursor == 41
        await pilot.press("home")
        assert stream.cursor == 0 and not stream.follow
        stream.move_to(41)
        assert stream.cursor == 41


async def test_mouse_wheel_up_stops_following() -> None:
    rows = ListRows()
    rows.grow(50)
    app = StreamApp(rows)
    async with app.run_test(size=(60, 12)) as pilot:
        stream = app.query_one(TraceStream)
        stream.sync()
        await pilot.pause()
        assert stream.follow
        stream.post_message(events.MouseScrollUp(stream, 1, 1, 0, 0, 0, False, False, False))
        await pilot.pause()
        assert not stream.follow


async def test_enter_selects_and_cursor_messages() -> None:
    rows = ListRows()
    rows.grow(3)
    seen: list[tuple[str, int]] = []

    class Recorder(StreamApp):
        def on_virtual_list_selected(self, event: VirtualList.Selected) -> None:
            seen.append(("selected", event.pos))

    app = Recorder(rows)
    async with app.run_test(size=(60, 8)) as pilot:
        stream = app.query_one(TraceStream)
        stream.focus()
        stream.sync()
        await pilot.press("up", "enter")
        await pilot.pause()
        assert seen == [("selected", 1)]


async def test_empty_stream_says_so() -> None:
    app = StreamApp(ListRows())
    async with app.run_test(size=(40, 5)) as pilot:
        await pilot.pause()
        stream = app.query_one(TraceStream)
        assert stream.render_line(0).text.startswith("no records (yet)")
        assert stream.cursor == 0


async def test_visible_rows_are_prepared_before_they_are_drawn() -> None:
    rows = ListRows()
    rows.grow(100)
    app = StreamApp(rows)
    async with app.run_test(size=(60, 12)) as pilot:
        stream = app.query_one(TraceStream)
        stream.sync()
        await pilot.pause()
        height = stream.scrollable_content_region.height
        assert rows.prepared and rows.prepared[-1] == (100 - height, 99)
