"""Sessions screen keys on constructed rows: sort order, marks (two at most), open and replay choices."""

from __future__ import annotations

from pathlib import Path

from phasef_tui.app import PhasefApp
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
