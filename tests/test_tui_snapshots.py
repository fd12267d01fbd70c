"""Snapshots of the main screens at 80x24 (the smallest layout we support), cursor blink off, fixed clock.

Update after a deliberate change of look with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and review
the SVGs in ``tests/__snapshots__/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from phasef_tui.app import PhasefApp
from phasef_tui.data_source import TraceFileSource
from phasef_tui.trace_feed import TraceFeed
from tests.tui_helpers import (
    FIXED_NOW,
    ConstructedSource,
    constructed_session,
    sample_records,
    session_with_comparison,
    write_trace,
)

SIZE = (80, 24)
WIDE = (120, 36)


def trace_app(tmp_path: Path, initial: str = "traces") -> PhasefApp:
    path = write_trace(tmp_path / "sample.jsonl", sample_records())
    feed = TraceFeed(path, follow=False, display_name="sample.jsonl")  # indexed whole on open (it is small)
    return PhasefApp(TraceFileSource(feed), blink=False, initial=initial, clock=lambda: FIXED_NOW)


def session_app(initial: str) -> PhasefApp:
    logs = {"B.sign_off": ("gate opened", "waiting for alice")}
    return PhasefApp(
        ConstructedSource(constructed_session(), logs=logs), blink=False, initial=initial, clock=lambda: FIXED_NOW
    )


async def settle(pilot: Pilot[Any]) -> None:
    """Let the frame loop and any plot worker finish, so the picture does not depend on timing."""
    await pilot.pause(0.2)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.1)


def test_traces(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(trace_app(tmp_path), terminal_size=SIZE, run_before=settle)


def test_traces_filtered_with_detail(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(trace_app(tmp_path), press=["s", "up", "v"], terminal_size=SIZE, run_before=settle)


def test_chains(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(trace_app(tmp_path, "chains"), press=["right"], terminal_size=SIZE, run_before=settle)


def test_dashboard(snap_compare: Any) -> None:
    assert snap_compare(session_app("dashboard"), terminal_size=SIZE, run_before=settle)


def test_dashboard_light(snap_compare: Any) -> None:
    """The stock light theme: every colour of the board, the headline and the log from the theme."""
    logs = {"B.sign_off": ("gate opened", "waiting for alice")}
    app = PhasefApp(
        ConstructedSource(constructed_session(), logs=logs),
        blink=False,
        initial="dashboard",
        clock=lambda: FIXED_NOW,
        theme="textual-light",
    )
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_audit(snap_compare: Any) -> None:
    assert snap_compare(session_app("audit"), terminal_size=SIZE, run_before=settle)


def test_audit_reason_dialog(snap_compare: Any) -> None:
    assert snap_compare(session_app("audit"), press=["r"], terminal_size=SIZE, run_before=settle)


def test_report(snap_compare: Any) -> None:
    assert snap_compare(session_app("report"), terminal_size=SIZE, run_before=settle)


def test_report_real_comparison(snap_compare: Any, tmp_path: Path) -> None:
    """Stage E's comparison as ``compare`` writes it: every metric name, figure and unit readable at 80x24."""
    app = PhasefApp(ConstructedSource(session_with_comparison(tmp_path)), blink=False, initial="report")
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_report_real_comparison_wide(snap_compare: Any, tmp_path: Path) -> None:
    app = PhasefApp(ConstructedSource(session_with_comparison(tmp_path)), blink=False, initial="report")
    assert snap_compare(app, terminal_size=WIDE, run_before=settle)


def test_help(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(trace_app(tmp_path), press=["question_mark"], terminal_size=SIZE, run_before=settle)
