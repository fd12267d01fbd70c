"""Baseline against fine-tuned, metric by metric, with the direction of each change made explicit.

Numbers and units live in separate columns: a value reads ``0.235`` under ``baseline`` and its unit (``per model
reply``) sits in its own column, so neither is glued to the other and a long unit is shortened before a metric name
or a figure is.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from widgets.session_view import DeltaRow
from widgets.theme import themed

METRIC_MIN_WIDTH = 10
METRIC_MAX_WIDTH = 24
UNIT_MIN_WIDTH = 5
ARROW_WIDTH = 2
GAP = 2
"""Blank columns between two columns (one either side)."""


def _digits(values: list[float]) -> int:
    """Decimals for one row (the same for its baseline, fine-tuned and delta, so they line up)."""
    if all(float(v).is_integer() for v in values):
        return 0
    largest = max(abs(v) for v in values)
    return 1 if largest >= 100 else 3


def _number(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return "—"
    sign = "+" if signed and value > 0 else ""
    return f"{sign}{value:,.{digits}f}"


def render_delta_table(rows: tuple[DeltaRow, ...], width: int = 120) -> RenderableType:
    """▲ better, ▼ worse, = unchanged; ``*`` marks a change beyond run-to-run noise.

    Figures are never shortened (each numeric column is as wide as its widest figure); the unit column gives way
    first, then the metric name down to ``METRIC_MIN_WIDTH``.
    """
    if not rows:
        return Text("no comparison yet (Stage E)", style="dim")
    cells = []
    for row in rows:
        delta = row.delta
        digits = _digits([v for v in (row.baseline, row.finetuned, delta) if v is not None] or [0.0])
        cells.append(
            (_number(row.baseline, digits), _number(row.finetuned, digits), _number(delta, digits, signed=True))
        )
    headers = ("baseline", "fine-tuned", "delta")
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    metric_width = min(max([len(r.metric) for r in rows] + [METRIC_MIN_WIDTH]), METRIC_MAX_WIDTH)
    unit_width = max([len(r.unit) for r in rows] + [len("unit")])
    spare = width - (metric_width + unit_width + sum(widths) + ARROW_WIDTH + GAP * 5)
    if spare < 0:  # the unit gives way first, then the metric name
        unit_width = max(UNIT_MIN_WIDTH, unit_width + spare)
        spare = width - (metric_width + unit_width + sum(widths) + ARROW_WIDTH + GAP * 5)
        if spare < 0:
            metric_width = max(METRIC_MIN_WIDTH, metric_width + spare)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, GAP // 2))
    table.add_column("metric", no_wrap=True, overflow="ellipsis", width=metric_width)
    table.add_column("unit", no_wrap=True, overflow="ellipsis", style="dim", width=unit_width)
    for header, figure_width in zip(headers, widths, strict=True):
        table.add_column(header, justify="right", no_wrap=True, width=figure_width)
    table.add_column("", width=ARROW_WIDTH, no_wrap=True)
    for row, (base, tuned, change) in zip(rows, cells, strict=True):
        improved = row.improved
        style = themed("good") if improved else (themed("bad") if improved is False else "dim")
        arrow = "▲" if improved else ("▼" if improved is False else "=")
        noise = "*" if row.beyond_noise else (" " if row.beyond_noise is False else "")
        table.add_row(
            row.metric,
            row.unit,
            base,
            tuned,
            Text(change, style=style),
            Text((arrow if row.delta is not None else "?") + noise, style=style),
        )
    return table


class Comparison:
    """The delta table laid out for the width it is given, then the residual blockers."""

    def __init__(self, rows: tuple[DeltaRow, ...], blockers: tuple[str, ...]) -> None:
        self.rows = rows
        self.blockers = blockers

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield render_delta_table(self.rows, options.max_width)
        if self.blockers:
            yield Text("residual blockers", style="bold")
            for blocker in self.blockers:
                yield Text.assemble(("■ ", themed("bad.b")), (blocker, themed("bad")))


def render_comparison(rows: tuple[DeltaRow, ...], blockers: tuple[str, ...]) -> RenderableType:
    return Comparison(rows, blockers)


class DeltaTable(Static):
    def show(self, rows: tuple[DeltaRow, ...], blockers: tuple[str, ...] = ()) -> None:
        self.update(render_comparison(rows, blockers))
