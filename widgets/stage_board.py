"""The stages A-E with their steps: state, attempt, duration. The operator's map of where the run is."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text
from textual.widgets import Static

from widgets.session_view import StageView, StepView
from widgets.theme import themed

STATE_ICONS = {
    "pending": ("○", "dim"),
    "running": ("●", "info.b"),
    "retrying": ("↻", "warn.b"),
    "succeeded": ("✓", "good"),
    "failed": ("✗", "bad.b"),
    "skipped": ("↷", "good"),
    "cancelled": ("⊘", "bad"),
    "waiting": ("◆", "attn.b"),
    "blocked": ("■", "bad.b"),
    "done": ("✓", "good"),
}


SELECTED_STYLE = "selected"
"""The selected step (whose log is shown): a background, so the cells keep their own colours."""


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def step_duration(step: StepView, now: float) -> float | None:
    if step.duration_s is not None:
        return step.duration_s
    if step.started_at is not None and step.state in ("running", "waiting", "retrying"):
        return max(0.0, now - step.started_at)
    return None


def clip_words(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, cut after a whole word (with ``…``), never inside one; a single word
    longer than the width is cut at the end as a last resort."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    cut = text[: width - 1].rstrip()
    space = cut.rfind(" ")
    if space > 0:
        cut = cut[:space].rstrip(" ·,;:-")
    return cut + "…"


def step_label(step: StepView, width: int) -> Text:
    """The step's id (the name in the plan, the operator's own word), its title when it fits, then its live note.

    What gives way first is the title (it is dropped whole), then the note (cut after a word); the id stays.
    """
    ident = step.step
    note = ""
    note_style = "dim"
    if step.kind == "gate" and step.state == "waiting":
        note, note_style = "needs sign-off", themed("attn.b")
    elif step.error and step.state in ("failed", "retrying", "blocked"):
        note, note_style = step.error, themed("bad")
    elif step.note:
        note = step.note
        if note.endswith("OVERRIDE"):  # a gate signed over the audit or unmet criteria: kept in sight
            note_style = themed("warn.b")
    cached = " (cached)" if step.cached else ""
    title = step.title if step.title and step.title != ident else ""
    room = width - 2 - len(ident) - len(cached)
    show_title = bool(title) and len(title) + 2 + (len(note) + 2 if note else 0) <= room
    text = Text("  ")
    text.append(clip_words(ident, max(1, width - 2)), style="bold")
    if show_title:
        text.append(f"  {title}", style="dim")
        room -= len(title) + 2
    if cached:
        text.append(cached, style="dim")
    if note and room > 3:
        text.append("  " + clip_words(note, room - 2), style=note_style)
    return text


FIXED_COLUMNS_GAP = 3
"""Blank cells between the four columns of the board."""


def render_stage_board(stages: tuple[StageView, ...], selected: str | None, now: float, width: int = 80) -> Text:
    """A header row per stage, then its steps (the selected one highlighted), in four columns laid out for ``width``:
    the state icon, the name (cut with an ellipsis), the state or attempt (right) and the duration (right), one blank
    cell between them. Written as lines of text, cell by cell as a Rich grid table would lay them out (tested against
    one): the board is redrawn every second while a step runs, and each SSH session forked from the session server
    then runs none of the table's layout code (~0.3 MB of pages copied per session)."""
    if not stages:
        return Text.assemble("  ", ("no plan yet", "dim"))
    attempts, durations, widths = board_columns(stages, now, width)
    name_width = widths[1]
    rows: list[Text] = []
    for stage in stages:
        icon, role = STATE_ICONS.get(stage.state, ("?", ""))
        style = themed(role)
        title = Text(clip_words(f"{stage.id}  {stage.title}", name_width), style="bold")
        rows.append(_row(widths, (Text(icon, style=style), title, Text(stage.state, style=style), Text())))
        for step in stage.steps:
            icon, role = STATE_ICONS.get(step.state, ("?", ""))
            style = themed(role)
            cells = (
                Text(icon, style=style),
                step_label(step, name_width),
                Text(attempts.get(step.key, ""), style=themed("warn")),
                Text(durations[step.key], style="dim"),
            )
            rows.append(_row(widths, cells, themed(SELECTED_STYLE) if step.key == selected else ""))
    board = Text("\n").join(rows)
    board.no_wrap, board.overflow = True, "ellipsis"  # (narrower than its columns: cut, not wrapped)
    return board


def board_columns(
    stages: tuple[StageView, ...], now: float, width: int
) -> tuple[dict[str, str], dict[str, str], tuple[int, int, int, int]]:
    """Each step's attempt (``try 2/3``, when it has had more than one) and duration, and the four columns' widths."""
    attempts = {}
    for stage in stages:
        for step in stage.steps:
            if step.attempts > 1 or step.state == "retrying":
                total = f"/{step.retries + 1}" if step.retries is not None else ""
                attempts[step.key] = f"try {step.attempts}{total}"
    durations = {s.key: format_duration(step_duration(s, now)) for st in stages for s in st.steps}
    attempt_width = max([len(a) for a in attempts.values()] + [max(len(s.state) for s in stages)])
    duration_width = max([len(d) for d in durations.values()] + [6])
    name_width = max(8, width - 1 - attempt_width - duration_width - FIXED_COLUMNS_GAP)
    return attempts, durations, (1, name_width, attempt_width, duration_width)


def _row(widths: tuple[int, ...], cells: tuple[Text, ...], style: str = "") -> Text:
    """One line: the cells cut to their columns' widths (an ellipsis where cut), the name left, the others right,
    one blank between them; ``style`` (the selected step's) under all of it, blanks included."""
    line = Text(style=style, end="")
    for index, (cell, width) in enumerate(zip(cells, widths, strict=True)):
        if index:
            line.append(" ")
        if index >= 2:
            cell.rstrip()  # (as Rich justifies to the right)
        cell.truncate(width, overflow="ellipsis")
        cell.align("left" if index < 2 else "right", width)
        line.append_text(cell)
    return line


class _Board:
    def __init__(self, stages: tuple[StageView, ...], selected: str | None, now: float) -> None:
        self.stages, self.selected, self.now = stages, selected, now

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield render_stage_board(self.stages, self.selected, self.now, options.max_width)


class StageBoard(Static):
    """Pure view: ``show(stages, selected, now)``."""

    _rows: int | None = None

    def show(self, stages: tuple[StageView, ...], selected: str | None, now: float) -> None:
        """A board with as many rows as the one shown (its clocks or a step's progress moved: a dashboard open on a
        live session redraws once a second, and at each report of a training) is redrawn in place, without laying
        the screen out again: its height is its number of rows (a row is cut to the width, never wrapped)."""
        rows = sum(1 + len(stage.steps) for stage in stages) if stages else 1
        self.update(_Board(stages, selected, now), layout=rows != self._rows)
        self._rows = rows
