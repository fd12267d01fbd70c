"""Session widgets as pure views: stage board, headline, verdict cards, evidence, decision, delta table, log tail."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.tui_helpers import FIXED_NOW, constructed_session, session_with_comparison
from tests.tui_helpers import plain_text as plain
from widgets.delta_table import render_comparison, render_delta_table
from widgets.headline import render_headline
from widgets.log_tail import render_log_tail
from widgets.session_view import DeltaRow, GateView, StageView, StepView
from widgets.stage_board import clip_words, format_duration, render_stage_board, step_duration
from widgets.verdict_card import render_decision, render_evidence, render_verdict


def test_durations() -> None:
    assert [format_duration(s) for s in (None, 4.25, 125, 3725)] == ["", "4.2s", "2m05s", "1h02m"]
    running = StepView("A.x", "A", "x", state="running", started_at=FIXED_NOW - 90)
    assert step_duration(running, FIXED_NOW) == 90
    assert step_duration(StepView("A.y", "A", "y", state="pending", started_at=1.0), FIXED_NOW) is None


def test_stage_state_is_the_worst_news() -> None:
    def stage(*states: str) -> StageView:
        return StageView("A", "t", tuple(StepView(f"A.{i}", "A", str(i), state=s) for i, s in enumerate(states)))

    assert stage("succeeded", "skipped").state == "done"
    assert stage("succeeded", "running").state == "running"
    assert stage("failed", "running").state == "failed"
    assert stage("succeeded", "pending").state == "pending"
    assert stage().state == "pending"


def test_stage_board() -> None:
    view = constructed_session()
    text = plain(render_stage_board(view.stages, "A.eval", FIXED_NOW))
    lines = text.splitlines()
    assert lines[0].startswith("✓ A  Baseline (API)") and lines[0].rstrip().endswith("done")
    eval_line = next(line for line in lines if "baseline eval" in line)
    assert "try 2/3" in eval_line and "2m05s" in eval_line
    assert any("sign_off  operator sign-off  needs sign-off" in line and "42.0s" in line for line in lines)
    assert "no plan yet" in plain(render_stage_board((), None, FIXED_NOW))
    failed = StageView("D", "Fine-tune", (StepView("D.t", "D", "t", state="failed", attempts=3, error="OOM"),))
    assert "t  OOM" in plain(render_stage_board((failed,), None, FIXED_NOW))


def test_stage_board_shows_step_ids_and_titles_only_where_they_fit() -> None:
    """The step id is the operator's word and always shown; a title is shown whole or not at all."""
    step = StepView(
        "A.voyager-realworld-eval",
        "A",
        "voyager-realworld-eval",
        "Evaluate the baseline on the real-world Voyager task set",
        "api",
        "running",
        note="episode 12/40 running the tests",
    )
    stages = (StageView("A", "Baseline (API) on the real-world task set", (step,)),)
    for width in (44, 60, 80, 120, 140):
        board = plain(render_stage_board(stages, None, FIXED_NOW, width), width)
        lines = [line.rstrip() for line in board.splitlines()]
        row = lines[1]
        assert max(len(line) for line in lines) <= width
        assert "voyager-realworld-eval" in row, (width, row)
        shown = row.split("voyager-realworld-eval", 1)[1]
        words = set("Evaluate the baseline on the real-world Voyager task set episode 12/40 running tests".split())
        for word in shown.replace("…", " ").split():
            assert word in words, f"{word!r} is a cut word at {width}: {row!r}"
        title_shown = "Evaluate the baseline on the real-world Voyager task set" in row
        assert title_shown == (width >= 140), (width, row)
        assert "Baseline (API)" in lines[0]
    quiet = dataclasses.replace(step, note=None, state="succeeded")
    row = plain(render_stage_board((StageView("A", "A", (quiet,)),), None, FIXED_NOW, 100), 100).splitlines()[1]
    assert "voyager-realworld-eval  Evaluate the baseline on the real-world Voyager task set" in row
    assert clip_words("operator sign-off needed now", 20) == "operator sign-off…"
    assert clip_words("short", 20) == "short"


def test_headline() -> None:
    view = constructed_session()
    text = plain(render_headline(view.state, view.final_decision, view.gates, view.metrics), 40)
    assert "run waiting" in text
    assert "◆ B.sign_off operator sign-off waits for sign-off (audit NO-GO)" in " ".join(text.split())
    assert "A.eval deaths" in text
    done = plain(render_headline("completed", "GO", (), ()), 40)
    assert "final GO" in done and "no gate waiting" in done and "metrics appear as steps finish" in done


def test_verdicts_evidence_and_decisions() -> None:
    gate = constructed_session().gates[0]
    primary = plain(render_verdict(gate.verdicts[0]))
    assert "gemini (primary)  NO-GO" in primary and "judged abababababab" in primary
    assert "■ baseline gate failed: too few ticks" in primary and "• ticksObserved 87 < 100" in primary
    evidence = plain(render_evidence(gate.evidence, gate.evidence_sha256))
    assert "audit:verdict.json" in evidence and "-" in evidence.splitlines()[2]
    assert "no evidence listed" in plain(render_evidence((), None))
    assert "waiting for the operator's decision" in plain(render_decision(gate))
    timed_out = GateView("B.g", state="timed_out")
    assert "NO-GO: no decision before the gate's timeout" in plain(render_decision(timed_out))
    signed = GateView("B.g", state="decided", decision="no-go", operator="bob", reason="deaths not explained")
    assert "NO-GO signed by bob" in plain(render_decision(signed)) and "reason: deaths" in plain(
        render_decision(signed)
    )


def test_delta_rows_and_table() -> None:
    assert DeltaRow("latency", 1.0, 0.5).improved is True
    assert DeltaRow("solved", 3, 5, lower_is_better=False).improved is True
    assert DeltaRow("solved", 5, 3, lower_is_better=False).improved is False
    assert DeltaRow("same", 1.0, 1.0).improved is None and DeltaRow("x", None, 1.0).delta is None
    text = plain(render_delta_table(constructed_session().deltas))
    latency = next(line for line in text.splitlines() if "latency p50" in line)
    assert latency.split() == ["latency", "p50", "s", "0.410", "0.330", "-0.080", "▲*"]
    assert "no comparison yet" in plain(render_delta_table(()))
    assert "residual blockers" in plain(render_comparison((), ("x is worse",)))


def test_delta_table_of_a_real_comparison_at_80_and_120_columns(tmp_path: Path) -> None:
    """Names, figures and units stay apart and whole; a long unit gives way first, never a name or a figure."""
    view = session_with_comparison(tmp_path)
    rows = {r.metric + " " + r.unit: r for r in view.deltas}
    assert len(rows) == 12, "MTTR in seconds and in ticks are two rows told apart by their unit"
    for width in (78, 118):
        lines = plain(render_comparison(view.deltas, view.residual_blockers), width).splitlines()
        assert max(len(line.rstrip()) for line in lines) <= width
        assert lines[0].split() == ["metric", "unit", "baseline", "fine-tuned", "delta"]
        schema = next(line for line in lines if line.startswith("schema-violation rate"))
        assert schema.split() == ["schema-violation", "rate", "per", "model", "reply", "0.102", "0.000", "-0.102", "▲*"]
        ticks = next(line for line in lines if line.startswith("MTTR") and "ticks" in line)
        assert ticks.split() == ["MTTR", "ticks", "1.983", "1.000", "-0.983", "▲*"]
        assert any(line.split()[:2] == ["ticks", "observed"] and line.split()[-2:] == ["-55", "▼*"] for line in lines)
        assert "■ 1 episode(s) solved by the baseline are unsolved after fine-tuning" in lines
    narrow = plain(render_delta_table(view.deltas, 78), 78)
    assert "chains recovered at …" in narrow, "the long unit is shortened at 80 columns"
    wide = plain(render_delta_table(view.deltas, 118), 118)
    assert "chains recovered at the first attempt" in wide


def test_log_tail() -> None:
    text = render_log_tail("A.eval", ("plain", "\x1b[31mTraceback (most recent call last)\x1b[0m"))
    assert text.plain == "plain\nTraceback (most recent call last)"
    assert render_log_tail(None, ()).plain == "(no step selected)"
    assert render_log_tail("A.eval", ()).plain == "(no log output)"
