"""Plot data reduction (what keeps a million-tick trace plottable in bounded time and memory) and the plot widgets."""

from __future__ import annotations

import math
from array import array

from textual.app import App, ComposeResult

from widgets.plots import BarPlot, LinePlot, Series, downsample, histogram, percentile, sample


def test_downsample_keeps_peaks_and_bounds_points() -> None:
    ys = array("i", [1] * 100_000)
    ys[77_777] = 500
    xs, small = downsample(ys, points=200)
    assert len(xs) == len(small) == 200
    assert max(small) == 500 and xs[0] == 0.0 and xs == sorted(xs)
    assert downsample([3.0, 1.0], points=10) == ([0.0, 1.0], [3.0, 1.0])


def test_histogram_sample_percentile() -> None:
    centres, counts = histogram([0.0, 1.0, 2.0, 3.0, math.nan, math.inf], bins=3)
    assert counts == [1, 1, 2] and len(centres) == 3 and sum(counts) == 4
    assert histogram([]) == ([], []) and histogram([2.0, 2.0]) == ([2.0], [2])
    assert len(sample(list(range(1_000_000)), limit=1000)) == 1000
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5 and math.isnan(percentile([], 0.5))


class PlotApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LinePlot(id="line")
        yield BarPlot(id="bars")


async def test_plots_draw_series_and_say_when_empty() -> None:
    app = PlotApp()
    async with app.run_test(size=(80, 30)) as pilot:
        line = app.query_one(LinePlot)
        line.show("training loss", [Series("train", (0.0, 1.0, 2.0), (3.0, 2.0, 1.5))], "step", "loss")
        bars = app.query_one(BarPlot)
        bars.show("latency", [("baseline", [0.1, 0.2], [3, 5])], "seconds")
        await pilot.pause()
        assert "training loss" in line.plt.build() and "train" in line.plt.build()
        assert "baseline" in bars.plt.build()
        line.show("context", [], "tick")
        assert "context (no data yet)" in line.plt.build()
