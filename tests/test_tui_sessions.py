"""Sessions screen keys on constructed rows: sort order, marks (two at most), open and replay choices."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.geometry import Region

from phasef_tui.app import PhasefApp
from phasef_tui.screens.sessions import SessionsScreen
from phasef_tui.sessions_source import SessionsSource
from tests.test_tui_sessions_snapshots import ROWS, comparison
from widgets.session_rows import COLUMNS, sort_rows
from widgets.sessions_table import SessionsTable


def _app() -> tuple[PhasefApp, SessionsSource]:
    source = SessionsSource(Path("/srv/s"), rows=lambda root: [dict(r) for r in ROWS], comparer=comparison)
    source._background = False
    return PhasefApp(source, blink=False), source


def _order(app: PhasefApp) -> list[str]:
    return [str(k.value) for k in app.screen.query_one(SessionsTable).rows]


async def test_sort_mark_and_replay() -> None:
    app, source = _app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause(0.3)
        assert _order(app) == [r["id"] for r in sort_rows(ROWS, 3, True)]  # newest start first
        assert _order(app)[-1] == "20261128-120000-0bad"  # no start time: last either way
        await pilot.press("r")
        assert _order(app)[:3] == ["20261129-080000-77aa", "20261130-221500-a1f3", "20261201-010203-9c2e"]
        assert _order(app)[-1] == "20261128-120000-0bad"
        await pilot.press(*["s"] * (COLUMNS.index(next(c for c in COLUMNS if c.title == "solved")) - 3))
        assert _order(app)[:2] == ["20261129-080000-77aa", "20261130-221500-a1f3"]  # 50% < 85.7%
        app.screen.query_one(SessionsTable).move_cursor(row=0)
        await pilot.press("space", "down", "space", "down", "space")  # a third mark replaces the oldest
        order = _order(app)
        assert source.marked == [order[1], order[2]]
        await pilot.press("p")  # replay the session under the cursor
        await pilot.pause(0.1)
    assert source.replay is True and source.chosen == Path(f"/srv/phasef/sessions/{order[2]}")


@pytest.mark.parametrize("size", [(120, 36), (80, 24)])
async def test_columns_fit_their_cells_in_a_frame_drawn_before_the_table_idles(size: tuple[int, int]) -> None:
    """A redraw rebuilds the columns; on a busy machine a frame may be drawn before the table's next idle. That
    frame shows whole cells already, and so do the frames after it (none is left at the width of the titles)."""
    app, _source = _app()
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, SessionsScreen)
        table = screen.query_one(SessionsTable)
        width = table.size.width
        for _ in range(len(COLUMNS)):  # every column sorted once: each redraw rebuilds the columns
            screen.action_sort()
            region = Region(0, 0, width, table.size.height)
            early = "\n".join(strip.text for strip in table.render_lines(region))  # the frame before the idle
            await pilot.pause(0.1)
            late = "\n".join(strip.text for strip in table.render_lines(region))
            for frame in (early, late):
                assert "…" not in frame, frame
                for row in ROWS:
                    assert row["id"] in frame, frame
                assert "unreadable" in frame and "completed" in frame, frame
