"""The viewer's source reports a background summary's progress, and a first scan's beyond the first screens, at most
every ``SUMMARY_REDRAW_S`` (each report redraws the trace screen), and everything else at once: new lines, a new
file, the summary's end, the scan's end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from phasef_tui import data_source
from phasef_tui.data_source import (
    CHANGED_TRACE_FILE,
    CHANGED_TRACES,
    SCAN_SHOWN_LINES,
    SUMMARY_REDRAW_S,
    TraceFileSource,
)


@dataclass
class _Index:
    """The figures of ``TraceIndex`` that ``poll`` compares."""

    lines: int = 10
    generation: int = 0
    size: int = 1000
    scanned: int = 1000
    summarized: int = 0
    chain_count: int = 0
    complete: bool = False

    def __len__(self) -> int:
        return self.lines


@dataclass
class _Feed:
    index: _Index = field(default_factory=_Index)
    display_name: str = "t.jsonl"


def _polled_at(monkeypatch: pytest.MonkeyPatch, index: _Index) -> Callable[..., set[str]]:
    """``at(t, **figures)``: the source's ``poll`` at ``t`` seconds on its clock, the index's figures set first."""
    now = [100.0]
    monkeypatch.setattr(data_source.time, "monotonic", lambda: now[0])
    source = TraceFileSource(_Feed(index))  # type: ignore[arg-type]

    def at(t: float, **figures: Any) -> set[str]:
        now[0] = 100.0 + t
        for name, value in figures.items():
            setattr(index, name, value)
        return source.poll()

    return at


def test_summary_progress_is_reported_at_most_every_quarter_second(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _polled_at(monkeypatch, _Index())
    assert at(0.0) == {CHANGED_TRACE_FILE, CHANGED_TRACES}
    assert at(0.05) == set(), "nothing changed"
    assert at(0.1, summarized=5) == set(), "progress alone, 0.1 s after the last report"
    assert at(0.2, summarized=6, chain_count=2) == set()
    assert at(SUMMARY_REDRAW_S + 0.01) == {CHANGED_TRACES}, "withheld progress is reported once due"
    assert at(0.3) == set()
    assert at(0.31, lines=11) == {CHANGED_TRACES}, "a new line: at once"
    assert at(0.32, size=1100) == {CHANGED_TRACES}, "the file grew: at once"
    assert at(0.33, summarized=8) == set()
    assert at(0.34, summarized=11, complete=True) == {CHANGED_TRACES}, "the summary's end: at once"
    assert at(0.35, generation=1) == {CHANGED_TRACES}, "indexed again from scratch: at once"
    assert at(0.36) == set()


def test_a_first_scan_is_reported_at_once_for_the_first_screens_then_as_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at = _polled_at(monkeypatch, _Index(lines=0, size=10**9, scanned=0))
    assert at(0.0) == {CHANGED_TRACE_FILE, CHANGED_TRACES}
    assert at(0.05, lines=40, scanned=4000) == {CHANGED_TRACES}, "the first screen's lines: at once"
    assert at(0.1, lines=SCAN_SHOWN_LINES, scanned=10**5) == {CHANGED_TRACES}, "still within the first screens"
    assert at(0.15, lines=50_000, scanned=10**7) == set(), "beyond them: progress, 0.05 s after the last report"
    assert at(0.2, lines=90_000, scanned=2 * 10**7) == set()
    assert at(0.1 + SUMMARY_REDRAW_S + 0.01, lines=95_000) == {CHANGED_TRACES}, "withheld progress, once due"
    assert at(0.4, lines=99_000, scanned=10**8) == set()
    assert at(0.41, size=10**9 + 100) == {CHANGED_TRACES}, "the file grew: at once"
    assert at(0.42, lines=150_000, scanned=2 * 10**8) == set()
    assert at(0.43, lines=2_000_000, scanned=10**9 + 100) == {CHANGED_TRACES}, "the scan's end: at once"
    assert at(0.44, generation=1, lines=10, scanned=100) == {CHANGED_TRACES}, "indexed again from scratch: at once"
    assert at(0.45, lines=20, scanned=200) == {CHANGED_TRACES}, "the first screens again: at once"
