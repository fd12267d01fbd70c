"""Snapshots of the Sessions and Compare screens at 80x24 and 120x36 (constructed rows and comparison: the look,
not the numbers, is under test here; tests/test_tui_sessions.py drives them on real sessions).

Update after a deliberate change of look with ``pytest tests/test_tui_sessions_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from phasef_tui.app import PhasefApp
from phasef_tui.sessions_source import SessionsSource
from tests.tui_helpers import FIXED_NOW
from widgets.sessions_table import SessionsTable

SMALL, LARGE = (80, 24), (120, 36)


def _row(sid: str, state: str | None, decision: str | None, started: str | None, duration: float | None,
         svr: float | None, mttr: float | None, solved: float | None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "id": sid,
        "path": f"/srv/phasef/sessions/{sid}",
        "state": state,
        "final_decision": decision,
        "exit_code": None,
        "models": extra.get("models", ["agent-model:default_model", "finetuned-model:default_model"]),
        "started": started,
        "finished": None,
        "duration_s": duration,
        "steps": 18,
        "failed_steps": [],
        "evals": ["A.voyager-realworld-eval", "D.guard-mcu-eval"],
        "metrics": {"schema_violation_rate": svr, "mttr_s": mttr, "mttr_ticks": None, "solved_share": solved},
        "metrics_from": "D.guard-mcu-eval",
        "problems": [],
        "error": extra.get("error"),
    }


ROWS = [
    _row("20261130-221500-a1f3", "completed", "GO", "2026-11-30T22:15:00.000Z", 5421.0, 0.021, 1.84, 0.857),
    _row("20261201-010203-9c2e", "running", None, "2026-12-01T01:02:03.000Z", 312.5, None, None, None),
    _row("20261129-080000-77aa", "completed", "NO-GO", "2026-11-29T08:00:00.000Z", 6102.0, 0.094, 3.2, 0.5),
    _row("20261128-120000-0bad", None, None, None, None, None, None, None, models=[], error="cannot read"),
]


def _metric(name: str, label: str, unit: str, a: float, b: float, beyond: bool, better: str) -> dict[str, Any]:
    delta = b - a
    improved = delta < 0 if better == "lower" else delta > 0
    return {
        "name": name,
        "label": label,
        "unit": unit,
        "better": better,
        "a": a,
        "b": b,
        "delta": delta,
        "direction": "same" if delta == 0 else ("better" if improved else "worse"),
        "beyond_noise": beyond,
        "ci": sorted([delta / 2, delta * 1.5]) if beyond else [delta - abs(delta) - 0.01, abs(delta) + 0.01],
        "sign_test": {"positive": 3, "negative": 9, "ties": 2, "p_value": 0.146},
        "pairs_used": 14,
    }


def comparison(a: str, b: str, root: Path) -> dict[str, Any]:
    a_id, b_id = Path(a).name, Path(b).name
    if "0bad" in a_id + b_id:
        return {
            "status": "refused",
            "refusal": [f"{b_id}: session {b_id} has no succeeded evaluation step"],
            "a": {"ref": a, "session": a_id, "step": None},
            "b": {"ref": b, "session": b_id, "step": None},
            "pairs": 0,
            "metrics": [],
        }
    return {
        "status": "compared",
        "refusal": [],
        "a": {"ref": a, "session": a_id, "step": "D.guard-mcu-eval"},
        "b": {"ref": b, "session": b_id, "step": "D.guard-mcu-eval"},
        "noise": {"resamples": 2000, "seed": 0, "confidence": 0.95},
        "pairs": 14,
        "metrics": [
            _metric("latency_p50_s", "latency p50", "s", 0.41, 0.38, False, "lower"),
            _metric("schema_violation_rate", "schema-violation rate", "per model reply", 0.094, 0.021, True, "lower"),
            _metric("mttr_s", "MTTR", "s", 3.2, 1.84, True, "lower"),
            _metric("solved_rate", "solved", "share of episodes", 0.5, 0.857, True, "higher"),
            _metric("deaths", "deaths", "death ticks", 4.0, 1.0, False, "lower"),
        ],
        "flips": {
            "solved": [{"task": "h11-lock#seed=3#1"}, {"task": "idna-flaky#seed=5#1"}],
            "unsolved": [],
            "died": [],
            "survived": [{"task": "mdurl-bomb#seed=1#1"}],
        },
        "residual_blockers": ["1 death(s) remain in the fine-tuned run (ep-009)"],
    }


def sessions_app() -> PhasefApp:
    source = SessionsSource(
        Path("/srv/phasef/sessions"),
        operator="alice",
        rows=lambda root: [dict(r) for r in ROWS],
        comparer=comparison,
        background=False,
    )
    return PhasefApp(source, blink=False, clock=lambda: FIXED_NOW)


async def settle(pilot: Pilot[Any]) -> None:
    """Until the table holds every row (the first frames may come before the rows are read), then one more frame."""
    for _ in range(100):
        await pilot.pause(0.05)
        tables = pilot.app.screen.query(SessionsTable)
        if not tables or tables.first().row_count == len(ROWS):
            break
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.2)


def test_sessions_small(snap_compare: Any) -> None:
    assert snap_compare(sessions_app(), terminal_size=SMALL, run_before=settle)


def test_sessions_large_marked_and_sorted(snap_compare: Any) -> None:
    # sorted by the schema-violation rate (the 6th column), two sessions marked A and B
    press = ["s", "s", "up", "space", "up", "space"]
    assert snap_compare(sessions_app(), press=press, terminal_size=LARGE, run_before=settle)


def test_compare_small(snap_compare: Any) -> None:
    press = ["down", "down", "space", "up", "up", "space", "c"]
    assert snap_compare(sessions_app(), press=press, terminal_size=SMALL, run_before=settle)


def test_compare_large(snap_compare: Any) -> None:
    press = ["down", "down", "space", "up", "up", "space", "c"]
    assert snap_compare(sessions_app(), press=press, terminal_size=LARGE, run_before=settle)


def test_compare_refused(snap_compare: Any) -> None:
    press = ["space", "down", "down", "down", "space", "c"]
    assert snap_compare(sessions_app(), press=press, terminal_size=SMALL, run_before=settle)
