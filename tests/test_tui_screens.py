"""Dashboard, Audit and Report screens on constructed session state (Pilot): what they show, their keys, and how
they follow a change of state at the frame rate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textual.widget import Widget

from phasef_tui.app import PhasefApp
from phasef_tui.screens.audit import AuditScreen
from phasef_tui.screens.dashboard import DashboardScreen
from phasef_tui.screens.reason import ReasonDialog
from phasef_tui.screens.report import ReportScreen
from tests.tui_helpers import (
    FIXED_NOW,
    ConstructedSource,
    constructed_session,
    open_feed,
    plain_text,
    sample_records,
    until,
    write_trace,
)
from widgets.plots import BarPlot, LinePlot
from widgets.session_view import CriterionView, GateView, SessionView

SIZE = (80, 24)
LOGS = {"B.audit": ("asking gemini", "asking claude", "verdict NO-GO"), "B.sign_off": ("waiting for alice",)}


def text_of(widget: Widget, width: int = 120) -> str:
    return plain_text(widget.content, width)  # type: ignore[attr-defined]


def app_for(source: ConstructedSource, initial: str) -> PhasefApp:
    return PhasefApp(source, blink=False, initial=initial, clock=lambda: FIXED_NOW)


async def test_dashboard_shows_stages_gates_metrics_and_log(tmp_path: Path) -> None:
    source = ConstructedSource(constructed_session(), logs=LOGS)
    app = app_for(source, "dashboard")
    async with app.run_test(size=SIZE) as pilot:
        dash = app.screen
        assert isinstance(dash, DashboardScreen)
        assert await until(pilot, lambda: "Baseline (API)" in text_of(dash.query_one("#board")))
        board = text_of(dash.query_one("#board"))
        assert "A  Baseline (API)" in board and "B  Recursive audit" in board and "C  Data refresh" in board
        assert "try 2/3" in board and "2m05s" in board, "retried step: attempt of allowed, and its duration"
        assert "needs sign-off" in board and "42.0s" in board, "a waiting gate's clock runs from its start"
        headline = text_of(dash.query_one("#headline"), 34)
        assert "operator sign-off" in headline and "audit NO-GO" in headline
        assert "A.eval ticksObserved" in headline and "87" in headline
        assert "waiting for alice" in text_of(dash.query_one("#log"))
        assert dash.query_one("#log").border_title == "log · B.sign_off"
        assert "◆ 1 gate waiting" in text_of(dash.query_one("#tabs"), 200)

        await pilot.press("up")
        assert dash.selected == "B.audit" and "verdict NO-GO" in text_of(dash.query_one("#log"))
        await pilot.press("up", "up", "up", "up")
        assert dash.selected == "A.serve", "the first step is as far as it goes"
        await pilot.press("c")
        assert dash.selected == "B.sign_off"

        decided = dataclasses.replace(
            source.view.gates[0], state="decided", decision="no-go", operator="alice", reason="too few ticks"
        )
        source.set_view(dataclasses.replace(source.view, gates=(decided,), final_decision="NO-GO"))
        assert await until(pilot, lambda: "no gate waiting" in text_of(dash.query_one("#headline"), 34))
        assert "final NO-GO" in text_of(dash.query_one("#tabs"), 200)


async def test_dashboard_jumps_to_the_waiting_gate(tmp_path: Path) -> None:
    app = app_for(ConstructedSource(constructed_session(), logs=LOGS), "dashboard")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        assert await until(pilot, lambda: isinstance(app.screen, AuditScreen))
        assert app.screen.gate_id == "B.sign_off"  # type: ignore[attr-defined]


async def test_audit_shows_verdicts_evidence_and_asks_for_a_reason(tmp_path: Path) -> None:
    source = ConstructedSource(constructed_session())
    app = app_for(source, "audit")
    async with app.run_test(size=SIZE) as pilot:
        audit = app.screen
        assert isinstance(audit, AuditScreen)
        assert await until(pilot, lambda: len(audit.query(".verdict-card")) == 2)
        header = text_of(audit.query_one("#gate-header"))
        assert "gate B.sign_off (1/1)" in header and "waiting" in header and "audit NO-GO" in header
        cards = [text_of(card) for card in audit.query(".verdict-card")]
        assert len(cards) == 2
        assert "gemini (primary)  NO-GO" in cards[0] and "■ baseline gate failed" in cards[0]
        assert "judged abababababab" in cards[0]
        assert "claude (recursive)  NO-GO" in cards[1] and "agrees with the primary" in cards[1]
        evidence = text_of(audit.query_one("#evidence"))
        assert "artifacts/A/eval/eval_report.json" in evidence and "1f1f1f1f1f1f" in evidence
        assert "bundle" in evidence and "cdcdcdcdcdcd" in evidence
        assert "waiting for the operator's decision" in text_of(audit.query_one("#decision"))

        await pilot.press("a")
        assert await until(pilot, lambda: isinstance(app.screen, ReasonDialog))
        title = str(app.screen.query_one("#reason-title").render())
        assert "APPROVE (GO) gate B.sign_off as alice" in title and "overrides" in title
        await pilot.press("escape")
        assert await until(pilot, lambda: isinstance(app.screen, AuditScreen))

        await pilot.press("r", *"not enough ticks", "enter")
        assert await until(pilot, lambda: any("not signed" in str(n.title) for n in app._notifications))
        assert "no session" in " ".join(str(n.message) for n in app._notifications)


async def test_audit_shows_who_signed(tmp_path: Path) -> None:
    view = constructed_session()
    decided = dataclasses.replace(
        view.gates[0],
        state="decided",
        decision="go",
        operator="alice",
        reason="reviewed the death traces",
        decided_at="2026-02-27T10:00:00Z",
        key_fingerprint="SHA256:abcdefghijklmnop",
        override=True,
        refusals=("bob: the decision names different evidence than the gate holds (stale view?)",),
    )
    app = app_for(ConstructedSource(dataclasses.replace(view, gates=(decided,))), "audit")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        decision = text_of(app.screen.query_one("#decision"), 200)
        assert "GO signed by alice [SHA256:abcdefghi] at 2026-02-27T10:00:00Z" in decision
        assert "OVERRIDE of the audit" in decision and "reason: reviewed the death traces" in decision
        assert "refused: bob: the decision names different evidence" in decision
        await pilot.press("a")
        assert await until(pilot, lambda: any("is not waiting" in str(n.message) for n in app._notifications))
        assert isinstance(app.screen, AuditScreen)


async def test_report_delta_table_and_plots(tmp_path: Path) -> None:
    feed = open_feed(write_trace(tmp_path / "t.jsonl", sample_records()))
    app = app_for(ConstructedSource(constructed_session(), feed=feed), "report")
    async with app.run_test(size=(100, 30)) as pilot:
        report = app.screen
        assert isinstance(report, ReportScreen)
        await pilot.pause(0.1)
        table = text_of(report.query_one("#deltas"), 100)
        latency = next(line for line in table.splitlines() if "latency p50" in line)
        assert latency.split() == ["latency", "p50", "s", "0.410", "0.330", "-0.080", "▲*"]
        assert "schema violation rate" in table and "▼" in table
        assert "residual blockers" in table and "schema violation rate is worse" in table
        loss = report.query_one("#plot-loss", LinePlot)
        assert report.plot == 0 and "training loss" in loss.plt.build()
        await pilot.press("p")
        latency = report.query_one("#plot-latency", BarPlot)
        assert await until(pilot, lambda: "p50 0.27s" in latency.plt.build())
        await pilot.press("p")
        context = report.query_one("#plot-context", LinePlot)
        assert await until(pilot, lambda: "max 1,070" in context.plt.build())
        await pilot.press("P")
        assert report.plot == 1, "P goes back to the previous plot"


def _overridden_session() -> SessionView:
    """B overridden over a NO-GO audit, then the final gate signed GO over an unmet audit criterion."""
    view = constructed_session()
    criteria = (
        CriterionView("evidence", "evidence completeness", True, "comparison.json: 1 death trace"),
        CriterionView("comparison", "comparative result", True, "comparison.json: compared"),
        CriterionView("audit", "recursive audit verdict = GO", False, "verdict.json: INVALID"),
    )
    baseline = dataclasses.replace(
        view.gates[0], state="decided", decision="go", operator="alice", reason="go on anyway", override=True
    )
    final = GateView(
        "E.final",
        state="decided",
        decision="go",
        operator="bob",
        reason="ship it",
        audit_verdict="NO-GO",
        override=True,
        final=True,
        criteria=criteria,
    )
    return dataclasses.replace(
        view, state="completed", gates=(baseline, final), final_decision="GO-OVERRIDE", pass_criteria=criteria
    )


async def test_overrides_stay_visible_on_dashboard_audit_and_report(tmp_path: Path) -> None:
    source = ConstructedSource(_overridden_session())
    app = app_for(source, "dashboard")
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause(0.1)
        headline = text_of(app.screen.query_one("#headline"), 120)
        assert "final GO-OVERRIDE" in headline
        assert "B.sign_off GO by alice: OVERRIDE of the audit (NO-GO)" in headline
        assert "E.final GO by bob: OVERRIDE of unmet pass criteria (audit)" in headline

        await pilot.press("4")
        assert await until(pilot, lambda: isinstance(app.screen, AuditScreen))
        audit = app.screen
        assert isinstance(audit, AuditScreen)
        audit.select_gate("B.sign_off")
        await pilot.pause(0.05)
        assert not audit.query_one("#criteria").display, "criteria belong to the final gate"
        assert "GO signed by alice" in text_of(audit.query_one("#decision"), 200)
        assert "OVERRIDE of the audit" in text_of(audit.query_one("#decision"), 200)
        audit.select_gate("E.final")
        await pilot.pause(0.05)
        assert audit.query_one("#criteria").display
        assert audit.query_one("#criteria").border_title == "pass criteria · 2/3 met"
        criteria = text_of(audit.query_one("#criteria"), 200)
        assert "✓ evidence completeness" in criteria and "✗ recursive audit verdict = GO" in criteria
        assert "verdict.json: INVALID" in criteria
        decision = text_of(audit.query_one("#decision"), 200)
        assert "GO-OVERRIDE signed by bob" in decision
        assert "OVERRIDE of unmet pass criteria: recursive audit verdict = GO" in decision

        await pilot.press("5")
        assert await until(pilot, lambda: isinstance(app.screen, ReportScreen))
        await pilot.pause(0.1)
        final = text_of(app.screen.query_one("#final-report"), 200)
        assert "final decision GO-OVERRIDE  operator override: a pass criterion is not met" in final
        assert final.index("final decision") < final.index("✗ recursive audit verdict = GO")
        assert "OVERRIDE B.sign_off by alice over audit NO-GO: go on anyway" in final
        assert "OVERRIDE E.final by bob over recursive audit verdict = GO: ship it" in final
