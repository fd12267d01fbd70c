"""Context size per tick number over a whole trace, and the ``ContextProfile`` the analysis reports from it.

``ContextSizes`` is filled by the analyzer's record loop (``pipeline.traces.analyzer``), which adds a tick's size
to ``sums``/``counts`` itself while the tick number is within the lists (the common case) and calls ``add_far``
beyond them; ``growth`` is the within-episode fit of ``pipeline.traces.growth``.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.traces.chains import ContextProfile
from pipeline.traces.growth import GrowthFit
from pipeline.traces.verbs import (
    BOUND_LATE_EARLY_RATIO,
    BOUND_LATE_GROWTH_SHARE,
    BOUND_MIN_SPAN,
    CONTEXT_LIST_TICKS,
)


class ContextSizes:
    """Summed sizes and sample counts by tick number (lists up to ``CONTEXT_LIST_TICKS``, dicts beyond), the largest
    size, and the growth fit."""

    def __init__(self, warmup: int | None) -> None:
        self.growth = GrowthFit(warmup)
        self.sums: list[int] = []
        self.counts: list[int] = []
        self.far_sums: dict[int, int] = {}
        self.far_counts: dict[int, int] = {}
        self.max = 0

    def add_far(self, t: int, chars: int) -> None:
        """A sample for a tick number beyond the lists: grow them, or use the dicts for huge numbers."""
        if t < CONTEXT_LIST_TICKS:
            grow = t + 1 - len(self.sums)
            self.sums.extend([0] * grow)
            self.counts.extend([0] * grow)
            self.sums[t] += chars
            self.counts[t] += 1
        else:
            self.far_sums[t] = self.far_sums.get(t, 0) + chars
            self.far_counts[t] = self.far_counts.get(t, 0) + 1

    def profile(self) -> ContextProfile:
        counts = {t: c for t, c in enumerate(self.counts) if c}
        counts.update(self.far_counts)
        sums = {t: s for t, s in enumerate(self.sums) if self.counts[t]}
        sums.update(self.far_sums)
        samples = sum(counts.values())
        if samples == 0:
            return ContextProfile(
                max_chars=0,
                mean_chars=0.0,
                growth_per_tick=0.0,
                early_mean=0.0,
                late_mean=0.0,
                bounded=False,
                samples=0,
            )
        span = max(counts)
        quarter = span / 4
        early = _window_mean(sums, counts, lambda t: t <= quarter)
        late = _window_mean(sums, counts, lambda t: t >= span - quarter)
        half = span / 2
        late_half_mean = _window_mean(sums, counts, lambda t: t >= half)
        slope = self.growth.growth() or 0.0
        late_growth = slope * (span - half)
        bounded = (
            span >= BOUND_MIN_SPAN
            and late_growth <= BOUND_LATE_GROWTH_SHARE * max(late_half_mean, 1.0)
            and late <= BOUND_LATE_EARLY_RATIO * max(early, 1.0)
        )
        return ContextProfile(
            max_chars=self.max,
            mean_chars=round(sum(sums.values()) / samples, 3),
            growth_per_tick=slope,
            early_mean=round(early, 3),
            late_mean=round(late, 3),
            bounded=bounded,
            samples=samples,
        )


def _window_mean(sums: dict[int, int], counts: dict[int, int], keep: Callable[[int], bool]) -> float:
    total = 0
    n = 0
    for t, c in counts.items():
        if keep(t):
            total += sums[t]
            n += c
    return total / n if n else 0.0
