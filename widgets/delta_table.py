"""Baseline against fine-tuned, metric by metric, with the direction of each change made explicit."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from widgets.session_view import DeltaRow


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100 or float(value).is_integer():
        body = f"{value:,.0f}"
    else:
        body = f"{value:.3f}"
    return f"{body}{unit}"


def render_delta_table(rows: tuple[DeltaRow, ...]) -> Table:
    """▲ better, ▼ worse, = unchanged; ``*`` marks a change beyond run-to-run noise."""
    table = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    table.add_column("metric", ratio=2, no_wrap=True, overflow="ellipsis")
    table.add_column("baseline", justify="right", no_wrap=True)
    table.add_column("fine-tuned", justify="right", no_wrap=True)
    table.add_column("delta", justify="right", no_wrap=True)
    table.add_column("", width=2, no_wrap=True)
    if not rows:
        table.add_row(Text("no comparison yet (Stage E)", style="dim"), "", "", "", "")
    for row in rows:
        delta = row.delta
        improved = row.improved
        style = "green" if improved else ("red" if improved is False else "dim")
        arrow = "▲" if improved else ("▼" if improved is False else "=")
        sign = "" if delta is None else ("+" if delta > 0 else "")
        noise = "*" if row.beyond_noise else (" " if row.beyond_noise is False else "")
        table.add_row(
            row.metric,
            _number(row.baseline, row.unit),
            _number(row.finetuned, row.unit),
            Text(f"{sign}{_number(delta, row.unit)}", style=style),
            Text((arrow if delta is not None else "?") + noise, style=style),
        )
    return table


def render_comparison(rows: tuple[DeltaRow, ...], blockers: tuple[str, ...]) -> RenderableType:
    if not blockers:
        return render_delta_table(rows)
    lines = [Text.assemble(("■ ", "bold red"), (b, "red")) for b in blockers]
    return Group(render_delta_table(rows), Text("residual blockers", style="bold"), *lines)


class DeltaTable(Static):
    def show(self, rows: tuple[DeltaRow, ...], blockers: tuple[str, ...] = ()) -> None:
        self.update(render_comparison(rows, blockers))
