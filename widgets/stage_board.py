"""The stages A-E with their steps: state, attempt, duration. The operator's map of where the run is."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from widgets.session_view import StageView, StepView

STATE_ICONS = {
    "pending": ("○", "dim"),
    "running": ("●", "bold cyan"),
    "retrying": ("↻", "bold yellow"),
    "succeeded": ("✓", "green"),
    "failed": ("✗", "bold red"),
    "skipped": ("↷", "green"),
    "cancelled": ("⊘", "red"),
    "waiting": ("◆", "bold magenta"),
    "blocked": ("■", "bold red"),
    "done": ("✓", "green"),
}


SELECTED_STYLE = "bold on grey27"
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


def render_stage_board(stages: tuple[StageView, ...], selected: str | None, now: float) -> Table:
    """A table: a header row per stage, then its steps (the selected one highlighted)."""
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(width=1)
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column(justify="right", no_wrap=True)
    table.add_column(justify="right", no_wrap=True, min_width=6)
    if not stages:
        table.add_row("", Text("no plan yet", style="dim"), "", "")
        return table
    for stage in stages:
        icon, style = STATE_ICONS.get(stage.state, ("?", ""))
        title = Text(f"{stage.id}  {stage.title}", style="bold")
        table.add_row(Text(icon, style=style), title, Text(stage.state, style=style), "")
        for step in stage.steps:
            icon, style = STATE_ICONS.get(step.state, ("?", ""))
            name = Text("  ")
            name.append(step.title or step.step)
            if step.cached:
                name.append(" (cached)", style="dim")
            if step.kind == "gate" and step.state == "waiting":
                name.append("  needs sign-off", style="bold magenta")
            elif step.error and step.state in ("failed", "retrying", "blocked"):
                name.append(f"  {step.error}", style="red")
            elif step.note:
                name.append(f"  {step.note}", style="bold yellow" if step.note.endswith("OVERRIDE") else "dim")
            attempt = ""
            if step.attempts > 1 or step.state == "retrying":
                total = f"/{step.retries + 1}" if step.retries is not None else ""
                attempt = f"try {step.attempts}{total}"
            row_style = SELECTED_STYLE if step.key == selected else ""
            table.add_row(
                Text(icon, style=style),
                name,
                Text(attempt, style="yellow"),
                Text(format_duration(step_duration(step, now)), style="dim"),
                style=row_style,
            )
    return table


class StageBoard(Static):
    """Pure view: ``show(stages, selected, now)``."""

    def show(self, stages: tuple[StageView, ...], selected: str | None, now: float) -> None:
        self.update(render_stage_board(stages, selected, now))
