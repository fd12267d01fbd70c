"""The stage board and the headline's metrics are written as lines of text, cell by cell: here they are compared,
segment by segment (text and style), with the Rich grid tables they replace (the references below), for any steps,
states, notes, selections and widths the columns fit in."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console, RenderableType
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from tests.tui_helpers import FIXED_NOW, constructed_session
from widgets import stage_board as sb
from widgets.headline import MetricRows
from widgets.session_view import StageView, StepView

STATES = list(sb.STATE_ICONS)
WORDS = st.text(st.sampled_from("abcdef -_.·é日"), min_size=1, max_size=30)


def table_board(stages: tuple[StageView, ...], selected: str | None, now: float, width: int) -> Table:
    """The board as a Rich grid table laid it out (the reference)."""
    table = Table.grid(padding=(0, 1))
    if not stages:
        table.add_column(width=1)
        table.add_column(ratio=1)
        table.add_row("", Text("no plan yet", style="dim"))
        return table
    attempts, durations, (_, name_width, attempt_width, duration_width) = sb.board_columns(stages, now, width)
    table.add_column(width=1)
    table.add_column(width=name_width, no_wrap=True, overflow="ellipsis")
    table.add_column(justify="right", no_wrap=True, width=attempt_width)
    table.add_column(justify="right", no_wrap=True, width=duration_width)
    for stage in stages:
        icon, role = sb.STATE_ICONS.get(stage.state, ("?", ""))
        style = sb.themed(role)
        title = Text(sb.clip_words(f"{stage.id}  {stage.title}", name_width), style="bold")
        table.add_row(Text(icon, style=style), title, Text(stage.state, style=style), "")
        for step in stage.steps:
            icon, role = sb.STATE_ICONS.get(step.state, ("?", ""))
            style = sb.themed(role)
            table.add_row(
                Text(icon, style=style),
                sb.step_label(step, name_width),
                Text(attempts.get(step.key, ""), style=sb.themed("warn")),
                Text(durations[step.key], style="dim"),
                style=sb.themed(sb.SELECTED_STYLE) if step.key == selected else "",
            )
    return table


def table_metrics(rows: list[tuple[str, str]]) -> Table:
    """The headline's metrics as a Rich grid table laid them out (the reference)."""
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column(justify="right", no_wrap=True)
    for name, value in rows:
        table.add_row(Text(name, style="dim"), Text(value, style="bold"))
    if not rows:
        table.add_row(Text("metrics appear as steps finish", style="dim"), "")
    return table


def segments(renderable: RenderableType, width: int) -> list[list[tuple[str, str]]]:
    """Each line's segments, adjacent ones of one style merged, no style and the null style alike."""
    console = Console(width=width, color_system="truecolor", force_terminal=True)
    lines = console.render_lines(renderable, console.options.update(width=width), pad=True)
    return [
        [(s.text, str(s.style)) for s in Segment.simplify([Segment(s.text, s.style or None) for s in line])]
        for line in lines
    ]


@st.composite
def boards(draw: Any) -> tuple[tuple[StageView, ...], str | None, int]:
    stages = []
    for s in range(draw(st.integers(0, 3))):
        steps = []
        for i in range(draw(st.integers(0, 4))):
            state = draw(st.sampled_from(STATES))
            steps.append(
                StepView(
                    f"S{s}.step{i}",
                    f"S{s}",
                    draw(WORDS),
                    draw(st.none() | WORDS),
                    draw(st.sampled_from(["api", "gate", "shell"])),
                    state,
                    attempts=draw(st.integers(0, 12)),
                    retries=draw(st.none() | st.integers(0, 100)),
                    started_at=draw(st.none() | st.floats(FIXED_NOW - 9000, FIXED_NOW)),
                    duration_s=draw(st.none() | st.floats(0, 90000)),
                    error=draw(st.none() | WORDS),
                    cached=draw(st.booleans()),
                    note=draw(st.none() | WORDS),
                )
            )
        stages.append(StageView(f"S{s}", draw(WORDS), tuple(steps)))
    keys = [step.key for stage in stages for step in stage.steps]
    selected = draw(st.none() | st.sampled_from(keys)) if keys else None
    return tuple(stages), selected, draw(st.integers(30, 160))


@settings(max_examples=200, deadline=None)
@given(board=boards())
def test_the_board_is_laid_out_as_the_rich_table_was(board: tuple[tuple[StageView, ...], str | None, int]) -> None:
    stages, selected, width = board
    expected = segments(table_board(stages, selected, FIXED_NOW, width), width)
    assert segments(sb.render_stage_board(stages, selected, FIXED_NOW, width), width) == expected


def test_the_constructed_session_board_at_every_width_and_selection() -> None:
    stages = constructed_session().stages
    for width in range(30, 141):
        for selected in (None, "A.eval", "B.sign_off"):
            expected = segments(table_board(stages, selected, FIXED_NOW, width), width)
            assert segments(sb.render_stage_board(stages, selected, FIXED_NOW, width), width) == expected, width


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(WORDS, st.text(st.sampled_from("0123456789. %sx"), max_size=12)), max_size=5),
    width=st.integers(1, 160),
)
def test_the_metrics_are_laid_out_as_the_rich_table_was(rows: list[tuple[str, str]], width: int) -> None:
    value_width = max((len(value) for _, value in rows), default=0)
    if width < value_width + 2:  # (narrower than the values: Rich shrinks them too; the metrics keep theirs)
        return
    metrics = MetricRows([(Text(name, style="dim"), Text(value, style="bold")) for name, value in rows])
    assert segments(metrics, width) == segments(table_metrics(rows), width)
