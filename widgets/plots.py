"""Terminal plots (textual-plotext): training loss, latency distribution, context size per tick.

Plots take series already reduced to a screen's worth of points (``downsample``, ``histogram``): a million ticks
are summarized before they reach plotext, which would otherwise redraw every point each frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from textual_plotext import PlotextPlot

MAX_POINTS = 400
"""Points per series handed to plotext (about two per terminal column of a wide screen)."""
TICKS = 6
"""Labelled ticks on a distribution's x axis."""
SAMPLE_LIMIT = 200_000
"""Values kept (evenly spaced) to draw a distribution and its percentiles."""


@dataclass(frozen=True)
class Series:
    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]


def downsample(ys: Sequence[float], points: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """At most ``points`` (x, y) points of the series ``ys`` (x = position): the maximum of each bucket of
    consecutive samples, so peaks stay visible. Works on arrays without copying them to lists."""
    n = len(ys)
    if n <= points:
        return [float(i) for i in range(n)], [float(y) for y in ys]
    out_x: list[float] = []
    out_y: list[float] = []
    step = n / points
    for b in range(points):
        lo = int(b * step)
        hi = max(lo + 1, int((b + 1) * step))
        out_x.append(float(lo))
        out_y.append(float(max(ys[lo:hi])))
    return out_x, out_y


def sample(values: Sequence[float], limit: int = SAMPLE_LIMIT) -> list[float]:
    """Every k-th value, at most ``limit`` of them (distributions of millions of ticks, in bounded memory)."""
    stride = max(1, len(values) // limit)
    return [float(v) for v in values[::stride]]


def histogram(values: Sequence[float], bins: int = 30) -> tuple[list[float], list[int]]:
    """Bin centres and counts of the finite ``values`` (empty lists when there are none)."""
    finite = [v for v in values if not math.isnan(v) and not math.isinf(v)]
    if not finite:
        return [], []
    lo, hi = min(finite), max(finite)
    if hi == lo:
        return [lo], [len(finite)]
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in finite:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    centres = [lo + (i + 0.5) * width for i in range(bins)]
    return centres, counts


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = (len(sorted_values) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def _fresh(plot: PlotextPlot, title: str, xlabel: str, ylabel: str = "") -> Any:
    """The plot's plotext figure, cleared, with its title and axis labels."""
    plt = plot.plt
    plt.clear_data()
    plt.clear_figure()
    plt.title(title)
    if xlabel:
        plt.xlabel(xlabel)
    if ylabel:
        plt.ylabel(ylabel)
    return plt


class LinePlot(PlotextPlot):
    """Lines of (x, y) series, e.g. training loss per step or context size per tick."""

    def show(self, title: str, series: Sequence[Series], xlabel: str = "", ylabel: str = "") -> None:
        plt = _fresh(self, title, xlabel, ylabel)
        drawn = False
        for s in series:
            if s.xs:
                plt.plot(list(s.xs), list(s.ys), label=s.label, marker="braille")
                drawn = True
        if not drawn:
            plt.title(f"{title} (no data yet)")
        self.refresh()


class BarPlot(PlotextPlot):
    """A distribution drawn as bars (bin centre -> count) for one or more series."""

    def show(self, title: str, bins: Sequence[tuple[str, Sequence[float], Sequence[int]]], xlabel: str = "") -> None:
        plt = _fresh(self, title, xlabel)
        drawn = False
        for label, centres, counts in bins:
            if centres:
                plt.bar(list(centres), list(counts), label=label, width=0.6)
                if not drawn:
                    ticks = list(centres)[:: max(1, len(centres) // TICKS)]
                    plt.xticks(ticks, [f"{t:.3g}" for t in ticks])
                drawn = True
        if not drawn:
            plt.title(f"{title} (no data yet)")
        self.refresh()
