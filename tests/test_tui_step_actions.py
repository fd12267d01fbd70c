"""The dashboard retries a failed step and cancels a running one of a real running supervisor (Textual Pilot),
approvers only; the journal records the operator."""

from __future__ import annotations

import asyncio
from pathlib import Path

from phasef_tui.app import PhasefApp
from phasef_tui.session_source import SessionSource
from tests.spine_helpers import approve, has_event, headless_run, journal_events, wait_for, write_plan
from tests.test_step_retry import RETRY_PLAN


async def _wait(predicate, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    end = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _select(pilot, screen, key: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(8):
        await pilot.press("up")
    keys = [s.key for st in screen._view().stages for s in st.steps]
    for _ in range(keys.index(key)):
        await pilot.press("down")
    assert screen.selected == key


async def test_dashboard_retry_and_cancel(tmp_path: Path) -> None:
    write_plan(tmp_path, RETRY_PLAN)
    with headless_run(tmp_path, "x") as (proc, session):
        wait_for(lambda: has_event(session, "step_blocked", "A.use"), 60, "the failed step")
        wait_for(lambda: has_event(session, "gate_opened", "B.release"), 60, "the gate")

        # a viewer is told no, and nothing reaches the journal
        viewer = PhasefApp(SessionSource(session, operator="val", role="viewer"), blink=False)
        async with viewer.run_test(size=(120, 36)) as pilot:
            await pilot.pause(0.3)
            await _select(pilot, viewer.screen, "A.fetch")
            await pilot.press("R")
            await pilot.pause(0.2)
            assert any("only approvers can retry" in n.message for n in viewer._notifications)
        assert not has_event(session, "step_retry_requested")

        (tmp_path / "ready").touch()
        app = PhasefApp(SessionSource(session, operator="ann"), blink=False)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause(0.3)
            screen = app.screen
            await _select(pilot, screen, "A.use")
            await pilot.press("R")  # blocked, not failed: refused on the spot
            await pilot.pause(0.1)
            assert any("A.use is blocked" in n.message for n in app._notifications)
            await _select(pilot, screen, "A.fetch")
            await pilot.press("R")
            await pilot.pause(0.2)
            await pilot.press(*"input back", "enter")
            await _wait(lambda: has_event(session, "step_succeeded", "A.use"), "the retried step and its dependent")
            await _select(pilot, screen, "A.long")
            await pilot.press("x")
            await pilot.pause(0.2)
            await pilot.press("enter")
            await _wait(lambda: has_event(session, "step_cancelled", "A.long"), "the cancel")
            await pilot.pause(0.3)
            messages = [n.message for n in app._notifications]
            assert "A.fetch: retry requested by ann" in messages and "A.long: cancel requested by ann" in messages
        r = approve(tmp_path, "x", "release", "go", "ann", "ok", "--override")
        assert r.returncode == 0, r.stderr
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out  # A.long stayed cancelled
    events = journal_events(session)
    retry = [e for e in events if e["type"] == "step_retry_requested"]
    assert [(e["step"], e["payload"]["operator"], e["payload"]["reason"]) for e in retry] == [
        ("fetch", "ann", "input back")
    ]
    cancel = [e for e in events if e["type"] == "step_cancel_requested"]
    assert [(e["step"], e["payload"]["operator"]) for e in cancel] == [("long", "ann")]
