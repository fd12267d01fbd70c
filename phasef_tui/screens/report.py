"""Report: the baseline/fine-tuned delta table and the plots (training loss live, latency, context size per tick).

Plots are recomputed at most once a second (a million-tick trace is reduced to a few hundred points first), and only
while this screen is visible.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ContentSwitcher, Static

from phasef_tui.data_source import TraceProfile
from phasef_tui.keys import bindings
from phasef_tui.screens.base import PhasefScreen
from widgets.delta_table import DeltaTable
from widgets.verdict_card import render_final_report

PLOTS = (("loss", "training loss"), ("latency", "latency distribution"), ("context", "context size per tick"))
PLOT_INTERVAL_S = 1.0
MAX_LOSS_POINTS = 2000

if TYPE_CHECKING:
    from widgets.plots import Series


class ReportScreen(PhasefScreen):
    SCREEN_NAME = "Report"
    BINDINGS = bindings("report")

    def __init__(self) -> None:
        super().__init__()
        self.plot = 1  # latency; a session starts on the training loss
        self._drawn_at = 0.0
        self._loss_mark: Any = None

    def compose(self) -> ComposeResult:
        from widgets.plots import BarPlot, LinePlot

        yield from self.compose_tabs()
        with Vertical(id="report-body"):
            yield Static(id="final-report")
            yield DeltaTable(id="deltas")
            yield Static(id="plot-tabs")
            with ContentSwitcher(id="plots", initial="plot-latency"):
                yield LinePlot(id="plot-loss")
                yield BarPlot(id="plot-latency")
                yield LinePlot(id="plot-context")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        if self.source.has_session:
            self.plot = 0
        self._switch()

    def _switch(self) -> None:
        name = PLOTS[self.plot][0]
        self.query_one("#plots", ContentSwitcher).current = f"plot-{name}"
        tabs = Text(no_wrap=True, overflow="ellipsis")
        for i, (_, title) in enumerate(PLOTS):
            tabs.append(f" {title} ", style="bold reverse" if i == self.plot else "dim")
        tabs.append("   p: next plot", style="dim")
        self.query_one("#plot-tabs", Static).update(tabs)
        self._drawn_at = 0.0
        self.refresh_view({"plot"})

    def action_next_plot(self, delta: int) -> None:
        self.plot = (self.plot + delta) % len(PLOTS)
        self._switch()

    def refresh_view(self, changed: set[str]) -> None:
        view = self.source.session_view(self.phasef.clock())
        table = self.query_one("#deltas", DeltaTable)
        final = self.query_one("#final-report", Static)
        if view is not None:
            table.show(view.deltas, view.residual_blockers)
            final.display = bool(view.pass_criteria) or any(g.override for g in view.gates)
            final.update(render_final_report(view.final_decision, view.pass_criteria, view.gates))
        else:
            table.show(())
            final.display = False
        if "all" in changed or "session" in changed:
            self.draw_tabs()
        name = PLOTS[self.plot][0]
        if name == "loss":
            mark = (view.loss, view.val_loss) if view is not None else None
            if mark != self._loss_mark or "plot" in changed:
                self._loss_mark = mark
                self._draw_loss(view.loss if view else (), view.val_loss if view else ())
            return
        now = time.monotonic()
        if "plot" not in changed and now - self._drawn_at < PLOT_INTERVAL_S:
            return
        self._drawn_at = now
        self._compute(name)

    def _draw_loss(self, loss: tuple[tuple[float, float], ...], val: tuple[tuple[float, float], ...]) -> None:
        from widgets.plots import LinePlot, Series

        series = [
            Series(label, tuple(p[0] for p in points), tuple(p[1] for p in points))
            for label, points in (("train", loss[-MAX_LOSS_POINTS:]), ("validation", val[-MAX_LOSS_POINTS:]))
            if points
        ]
        note = "" if self.source.has_session else " (a session shows Stage D here)"
        self.query_one("#plot-loss", LinePlot).show("training loss" + note, series, "step", "loss")

    @work(thread=True, exclusive=True, group="plots", exit_on_error=False)
    def _compute(self, name: str) -> None:
        """Reduce the traces to plot data off the UI thread, then draw it there."""
        if name == "latency":
            bars, title = latency_plot(self.source.profiles())
            self.app.call_from_thread(self._draw_bars, title, bars)
        else:
            series, title = context_plot(self.source.profiles())
            self.app.call_from_thread(self._draw_lines, title, series)

    def _draw_bars(self, title: str, bars: list[tuple[str, list[float], list[int]]]) -> None:
        from widgets.plots import BarPlot

        self.query_one("#plot-latency", BarPlot).show(title, bars, "seconds")

    def _draw_lines(self, title: str, series: list[Series]) -> None:
        from widgets.plots import LinePlot

        self.query_one("#plot-context", LinePlot).show(title, series, "tick (in trace order)", "chars")


def latency_plot(profiles: list[TraceProfile]) -> tuple[list[tuple[str, list[float], list[int]]], str]:
    """Histogram bars per trace and a title with p50/p95 (from an even sample of at most 200k ticks)."""
    from widgets.plots import histogram, percentile, sample

    bars = []
    notes = []
    for profile in profiles:
        values = sorted(sample(profile.latencies))
        centres, counts = histogram(values)
        bars.append((profile.label, centres, counts))
        if values:
            notes.append(f"{profile.label}: p50 {percentile(values, 0.5):.2f}s p95 {percentile(values, 0.95):.2f}s")
    return bars, "model latency per tick" + (" · " + " · ".join(notes) if notes else "")


def context_plot(profiles: list[TraceProfile]) -> tuple[list[Series], str]:
    """Context size per tick (bucket maxima) per trace, and a title with each trace's maximum."""
    from widgets.plots import Series, downsample

    series = []
    peaks = []
    for profile in profiles:
        xs, ys = downsample(profile.context_chars)
        series.append(Series(profile.label, tuple(xs), tuple(ys)))
        if profile.context_chars:
            peaks.append(f"{profile.label}: max {max(profile.context_chars):,}")
    return series, "context chars per tick" + (" · " + " · ".join(peaks) if peaks else "")
