"""The dashboard's board and log tail are redrawn in place (no layout of the screen) when only what they show
changed: a step's progress, its clock, new log lines. The board is laid out again when its number of rows changes,
and its height is always its number of rows."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.widget import Widget

from widgets.log_tail import LogTail
from widgets.session_view import StageView, StepView
from widgets.stage_board import StageBoard


class _Dash(App[None]):
    CSS = "#log { height: 6; }"

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield StageBoard(id="board")
        yield LogTail(id="log")


def _text(widget: Widget) -> str:
    """What the widget shows now, line by line."""
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, *widget.size)))


def _stages(steps: int, note: str) -> tuple[StageView, ...]:
    running = StepView("D.train", "D", "train", state="running", attempts=1, started_at=1000.0, note=note)
    more = tuple(StepView(f"D.s{i}", "D", f"s{i}") for i in range(steps - 1))
    return (StageView("D", "Fine-tune", (running, *more)),)


async def test_board_and_log_redrawn_in_place_unless_the_rows_change() -> None:
    app = _Dash()
    async with app.run_test(size=(100, 30)) as pilot:
        board = app.query_one(StageBoard)
        log = app.query_one(LogTail)
        layouts: list[tuple[str, bool]] = []
        for widget in (board, log):
            real = widget.refresh

            def spy(*args: Any, _real: Any = real, _name: str = widget.id or "", **kwargs: Any) -> Any:
                layouts.append((_name, bool(kwargs.get("layout", False))))
                return _real(*args, **kwargs)

            widget.refresh = spy  # type: ignore[method-assign]

        board.show(_stages(2, "step 10/3000"), None, 1001.0)
        await pilot.pause()
        assert layouts[-1] == ("board", True)  # the first rows
        assert board.size.height == 3
        layouts.clear()
        board.show(_stages(2, "step 20/3000 loss 0.9"), None, 1002.0)  # the progress and the clock moved
        await pilot.pause()
        assert layouts == [("board", False)]
        assert "step 20/3000" in _text(board)
        board.show(_stages(3, "step 30/3000"), "D.train", 1003.0)  # a step more: a row more
        await pilot.pause()
        assert layouts[-1] == ("board", True)
        assert board.size.height == 4
        board.show((), None, 1004.0)  # no plan: one row ("no plan yet")
        await pilot.pause()
        assert layouts[-1] == ("board", True)
        assert board.size.height == 1
        layouts.clear()
        log.show("D.train", ("one", "two"))
        log.show("D.train", ("one", "two", "three"))
        await pilot.pause()
        assert layouts and all(entry == ("log", False) for entry in layouts)
        assert log.size.height == 6
        assert "three" in _text(log)
