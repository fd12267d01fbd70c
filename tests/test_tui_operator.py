"""Operator experience (Pilot): the audit screen follows the waiting gate, the dashboard names steps by their ids."""

from __future__ import annotations

import dataclasses

from phasef_tui.app import PhasefApp
from phasef_tui.screens.audit import AuditScreen
from tests.tui_helpers import FIXED_NOW, ConstructedSource, constructed_session, until
from widgets.session_view import GateView, SessionView

SIZE = (80, 24)


def app_for(source: ConstructedSource, initial: str) -> PhasefApp:
    return PhasefApp(source, blink=False, initial=initial, clock=lambda: FIXED_NOW)


def two_gates(first_state: str, second: bool) -> SessionView:
    """The baseline gate (decided or waiting) and, when ``second``, Stage D's gate waiting after it."""
    view = constructed_session()
    first = view.gates[0]
    if first_state == "decided":
        first = dataclasses.replace(first, state="decided", decision="go", operator="alice", reason="ok")
    gates: tuple[GateView, ...] = (first,)
    if second:
        gates += (GateView(id="D.sign_off", title="adapter sign-off", state="waiting", prompt="Ship the adapter?"),)
    return dataclasses.replace(view, gates=gates)


def header(app: PhasefApp) -> str:
    return str(app.screen.query_one("#gate-header").render())


async def test_audit_opens_on_the_waiting_gate_not_the_first_decided_one() -> None:
    app = app_for(ConstructedSource(two_gates("decided", second=True)), "audit")
    async with app.run_test(size=SIZE) as pilot:
        assert await until(pilot, lambda: "gate D.sign_off (2/2)" in header(app)), header(app)
        assert "waiting" in header(app)


async def test_audit_moves_on_to_the_gate_that_opens_later_until_the_operator_chooses() -> None:
    """Opened while the first gate waited (or while the journal was still being replayed), the screen moves on to
    the next waiting gate once the first is decided; a gate the operator picked stays picked."""
    source = ConstructedSource(two_gates("waiting", second=False))
    app = app_for(source, "audit")
    async with app.run_test(size=SIZE) as pilot:
        assert await until(pilot, lambda: "gate B.sign_off (1/1)" in header(app))
        source.set_view(two_gates("decided", second=True))
        assert await until(pilot, lambda: "gate D.sign_off (2/2)" in header(app)), header(app)

        await pilot.press("left_square_bracket")  # the operator goes back to the decided gate on purpose
        assert await until(pilot, lambda: "gate B.sign_off (1/2)" in header(app))
        source.set_view(two_gates("decided", second=True))
        await pilot.pause(0.2)
        assert "gate B.sign_off (1/2)" in header(app), "an explicit choice is kept across frames"
        assert isinstance(app.screen, AuditScreen)
