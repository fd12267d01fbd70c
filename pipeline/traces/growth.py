"""Prompt size per tick and its growth: the one definition shared by ``phasef trace stats`` and the eval report.

**Context size** of a tick: its ``context_chars`` when that is an integer, else the summed ``content`` lengths of
its ``context`` messages; a size of 0 (or none) is no sample (a reflex tick that called no model).

**Growth per tick**: the least-squares slope of context size against tick number, fitted *within* each episode (one
intercept per episode, one common slope), over the ticks at or after the episode's **warm-up**. The warm-up is the
gate's ``contextWarmupTicks`` (or ``trace stats --warmup``) when set, else the episode's ``context_window`` + 1
(from its ``episode_start``), else ``DEFAULT_WARMUP_TICKS``. Episodes with fewer than two such ticks add nothing;
without any, the growth is undefined (None). Rounded to ``GROWTH_DIGITS`` decimals.

The fit is streamed (Welford updates per episode, folded into the totals when the episode closes), so memory stays
bounded by the open episodes, never by the length of the trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.traces.records import TraceRecord

DEFAULT_WARMUP_TICKS = 5
GROWTH_DIGITS = 4


def context_size(obj: dict[str, Any] | TraceRecord) -> int | None:
    """Prompt size of one tick record in characters; None or 0 when it carries no sample."""
    chars = obj.get("context_chars")
    if type(chars) is int:
        return chars
    if chars is not None:
        return None
    context = obj.get("context")
    if not isinstance(context, list):
        return None
    total = 0
    for message in context:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
    return total


def episode_warmup(context_window: Any, override: int | None) -> int:
    """The warm-up of one episode: ``override`` if given, else ``context_window + 1``, else the default."""
    if override is not None:
        return override
    if type(context_window) is int and context_window >= 0:
        return context_window + 1
    return DEFAULT_WARMUP_TICKS


class _Fit:
    __slots__ = ("cxy", "m2x", "mx", "my", "n", "warmup")

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.n = 0
        self.mx = self.my = self.cxy = self.m2x = 0.0


class GrowthFit:
    """Streaming within-episode slope. ``start`` an episode (optional: a tick of an unstarted episode uses the
    default warm-up), ``add`` its samples, ``close`` it; ``growth`` gives the slope."""

    def __init__(self, warmup_override: int | None = None) -> None:
        self.warmup_override = warmup_override
        self._open: dict[Any, _Fit] = {}
        self._sxx = 0.0
        self._sxy = 0.0

    def start(self, key: Any, context_window: Any = None) -> None:
        self.close(key)
        self._open[key] = _Fit(episode_warmup(context_window, self.warmup_override))

    @property
    def open_fits(self) -> dict[Any, _Fit]:
        """The fits of open episodes by key (the analyzer's inline tick path updates them as ``add`` does)."""
        return self._open

    def new_fit(self, key: Any) -> _Fit:
        """The fit of an episode that was not started (default warm-up)."""
        fit = self._open[key] = _Fit(episode_warmup(None, self.warmup_override))
        return fit

    def add(self, key: Any, tick: int, chars: int) -> None:
        fit = self._open.get(key)
        if fit is None:
            fit = self.new_fit(key)
        if tick < fit.warmup:
            return
        fit.n += 1
        dx = tick - fit.mx
        fit.mx += dx / fit.n
        fit.my += (chars - fit.my) / fit.n
        fit.cxy += dx * (chars - fit.my)
        fit.m2x += dx * (tick - fit.mx)

    def close(self, key: Any) -> None:
        fit = self._open.pop(key, None)
        if fit is not None and fit.n >= 2:
            self._sxx += fit.m2x
            self._sxy += fit.cxy

    def growth(self) -> float | None:
        """Chars per tick (rounded), folding in episodes still open; None when no episode has two samples."""
        for key in list(self._open):
            self.close(key)
        if self._sxx <= 0:
            return None
        return round(self._sxy / self._sxx, GROWTH_DIGITS)
