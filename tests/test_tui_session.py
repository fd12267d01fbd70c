"""A session as the TUI sees it: the journal (written by the real writer) replayed and tailed into a SessionView,
logs, traces and the comparison found in the session folder, and decisions signed through a real supervisor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from phasef_tui.app import PhasefApp
from phasef_tui.data_source import ApprovalError
from phasef_tui.screens.audit import AuditScreen
from phasef_tui.screens.override import OverrideDialog
from phasef_tui.session_source import SessionSource, deltas_from
from pipeline.journal import Journal
from tests.spine_helpers import ONE_GATE_PLAN
from tests.tui_helpers import plain_text, sample_records, write_trace
from tests.tui_helpers import until as pilot_until

PLAN = [
    {"stage": "A", "step": "eval", "kind": "api", "title": "baseline eval"},
    {"stage": "D", "step": "train", "kind": "mlx_train"},
    {"stage": "B", "step": "sign_off", "kind": "gate"},
]
CONFIG = """
[stages.A]
title = "Baseline (API)"
[stages.A.steps.eval]
kind = "shell"
command = "true"
retries = 2
[stages.B]
title = "Recursive audit"
[stages.B.steps.sign_off]
kind = "gate"
title = "operator sign-off"
[stages.D]
title = "Fine-tune"
[stages.D.steps.train]
kind = "shell"
command = "true"
"""
AUDIT = {
    "verdict": "NO-GO",
    "reasons": ["primary says NO-GO"],
    "packet_sha256": "ab" * 32,
    "auditors": [
        {
            "name": "gemini",
            "role": "primary",
            "verdict": "NO-GO",
            "findings": ["too few ticks"],
            "blockers": [{"text": "baseline failed its gate"}],
            "error": None,
        },
        {"name": "claude", "role": "recursive", "verdict": "NO-GO", "findings": [], "blockers": [], "error": None},
    ],
}


def write_session(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.resolved.toml").write_text(CONFIG, encoding="utf-8")
    (folder / "logs").mkdir()
    log = folder / "logs" / "A.eval.1.log"
    log.write_text('starting\n@@phasef-event {"event":"x"}\n' + "".join(f"line {i}\n" for i in range(300)))
    with Journal(folder, fsync=False) as journal:
        journal.append("session_started", payload={"plan": PLAN, "pid": os.getpid()})
        journal.append("step_started", stage="A", step="eval", attempt=1, payload={"log": "logs/A.eval.1.log"})
        journal.append("step_failed", stage="A", step="eval", attempt=1, payload={"error": "boom", "retry_at": "x"})
        journal.append("step_started", stage="A", step="eval", attempt=2, payload={"log": "logs/A.eval.1.log"})
        journal.append(
            "step_succeeded",
            stage="A",
            step="eval",
            attempt=2,
            payload={"duration_s": 12.5, "summary": {"ticksObserved": 87, "deaths": 3, "latencyP50": 0.41}},
        )
        journal.append("step_started", stage="D", step="train", attempt=1, payload={})
        for step in range(0, 50, 10):
            journal.append(
                "step_progress",
                stage="D",
                step="train",
                payload={"event": "train", "step": step, "total_steps": 50, "train_loss": 3.0 - step / 25},
            )
        journal.append(
            "gate_opened",
            stage="B",
            step="sign_off",
            payload={
                "prompt": "Accept the baseline?",
                "evidence": {"artifacts/A/eval/report.json": "1f" * 32, "audit:verdict.json": "missing"},
                "evidence_sha256": "cd" * 32,
                "audit": AUDIT,
            },
        )
    return folder


def test_journal_replayed_into_a_session_view(tmp_path: Path) -> None:
    folder = write_session(tmp_path / "s1")
    with open(folder / "journal.jsonl", "ab") as fh:
        fh.write(b"{not json}\n")
    source = SessionSource(folder, operator="alice")
    try:
        view = source.session_view(time.time())
        assert [s.id for s in view.stages] == ["A", "B", "D"], "stage order comes from the resolved config"
        assert [s.title for s in view.stages] == ["Baseline (API)", "Recursive audit", "Fine-tune"]
        eval_step = view.step("A.eval")
        assert eval_step is not None and eval_step.state == "succeeded" and eval_step.attempts == 2
        assert eval_step.retries == 2 and eval_step.duration_s == 12.5 and eval_step.title == "baseline eval"
        train = view.step("D.train")
        assert train is not None and train.state == "running" and train.note == "step 40/50 loss 1.400"
        assert view.current_step == "D.train"
        assert [m.name for m in view.metrics] == ["A.eval ticksObserved", "A.eval deaths", "A.eval latencyP50"]
        assert view.loss[0] == (0.0, 3.0) and len(view.loss) == 5
        gate = view.gates[0]
        assert gate.state == "waiting" and gate.audit_verdict == "NO-GO" and gate.title == "operator sign-off"
        assert [v.auditor for v in gate.verdicts] == ["gemini", "claude"]
        assert gate.verdicts[0].blockers == ("baseline failed its gate",)
        assert gate.evidence[1].sha256 is None, "a missing piece of evidence has no hash"
        assert view.pending_gates == (gate,)
        assert len(view.problems) == 1 and "journal.jsonl:" in view.problems[0] and "not valid JSON" in view.problems[0]

        assert source.poll() >= {"session"}
        assert "session" not in source.poll()
        with Journal(folder, fsync=False) as journal:
            journal.append("step_succeeded", stage="D", step="train", payload={"summary": {"final_train_loss": 1.3}})
        assert source.read_journal()
        assert "session" in source.poll()
        view = source.session_view(time.time())
        assert view.step("D.train").state == "succeeded"  # type: ignore[union-attr]
        assert "D.train final_train_loss" in [m.name for m in view.metrics]
    finally:
        source.stop()


def test_log_tail_leaves_out_progress_events(tmp_path: Path) -> None:
    source = SessionSource(write_session(tmp_path / "s"), operator="alice")
    try:
        lines = source.log_tail("A.eval")
        assert lines[-1] == "line 299" and len(lines) == 200
        assert not any(line.startswith("@@phasef-event") for line in lines)
        assert source.log_tail("D.train") == () and source.log_tail(None) == ()
    finally:
        source.stop()


def test_traces_and_comparison_are_found_in_the_session(tmp_path: Path) -> None:
    folder = write_session(tmp_path / "s")
    trace_dir = folder / "artifacts" / "A" / "eval"
    trace_dir.mkdir(parents=True)
    write_trace(trace_dir / "dirty_trace.jsonl", sample_records())
    (trace_dir / "rows.jsonl").write_text('{"prompt": "x"}\n')
    (folder / "report").mkdir()
    comparison = {
        "schema": "phasef.comparison/1",
        "deltas": [
            {
                "metric": "latency_p50",
                "label": "latency p50",
                "unit": "s",
                "better": "lower",
                "baseline": 0.4,
                "finetuned": 0.3,
                "beyond_noise": True,
            },
            {
                "metric": "solved",
                "label": "solved",
                "unit": "",
                "better": "higher",
                "baseline": 10,
                "finetuned": 8,
                "beyond_noise": False,
            },
        ],
        "residual_blockers": ["solved is worse"],
    }
    (folder / "report" / "comparison.json").write_text(json.dumps(comparison))
    source = SessionSource(folder, operator="alice")
    source.start()
    try:
        assert source.trace_files() == [trace_dir / "dirty_trace.jsonl"]
        feed = source.feed
        assert feed is not None and feed.display_name == "artifacts/A/eval/dirty_trace.jsonl"
        view = source.session_view(time.time())
        assert [(d.metric, d.improved, d.beyond_noise) for d in view.deltas] == [
            ("latency p50", True, True),
            ("solved", False, False),
        ]
        assert view.residual_blockers == ("solved is worse",)
        assert feed.wait_indexed(5)
        (profile,) = source.profiles()
        assert len(profile.latencies) == 11 and max(profile.context_chars) == 1070
    finally:
        source.stop()


def test_deltas_from_plain_maps() -> None:
    rows = deltas_from({"baseline": {"latency_p95": 1.0, "solved": 3}, "finetuned": {"latency_p95": 0.5}})
    assert [(r.metric, r.baseline, r.finetuned, r.improved) for r in rows] == [
        ("latency_p95", 1.0, 0.5, True),
        ("solved", 3.0, None, None),
    ]


# -- a real supervisor ------------------------------------------------------------------------------------------------

GATE_PLAN = ONE_GATE_PLAN


@contextlib.contextmanager
def running_supervisor(tmp_path: Path, plan: str) -> Iterator[Path]:
    (tmp_path / "config.toml").write_text(plan)
    proc = subprocess.Popen(
        [sys.executable, "-m", "phasef_tui.cli", "run", "--headless", "--plain", "--session", "s1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    session = tmp_path / "sessions" / "s1"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            journal = session / "journal.jsonl"
            if journal.exists() and b'"gate_opened"' in journal.read_bytes() and (session / "control.sock").exists():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the supervisor did not open its gate")
        yield session
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Path]:
    with running_supervisor(tmp_path, GATE_PLAN) as session:
        yield session


def rendered(widget: Any) -> str:
    return plain_text(widget.content, 200)


async def until(pilot: Pilot[int], predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Longer than the shared wait by default: a real supervisor runs beside the app."""
    return await pilot_until(pilot, predicate, timeout)


async def test_approve_from_the_audit_screen_through_the_supervisor(supervisor: Path) -> None:
    """The one-gate plan has no comparison and no audit: its GO is an override, confirmed a second time."""
    source = SessionSource(supervisor, operator="alice")
    app = PhasefApp(source, blink=False, initial="audit")
    async with app.run_test(size=(100, 30)) as pilot:
        audit = app.screen
        assert isinstance(audit, AuditScreen)
        assert await until(pilot, lambda: audit.current_gate() is not None)
        assert "final gate" in str(audit.query_one("#gate-header").render())
        criteria = audit.query_one("#criteria")
        assert criteria.display and criteria.border_title == "pass criteria · 0/3 met"
        assert "✗ recursive audit verdict = GO" in str(criteria.render())
        await pilot.press("a")
        assert await until(pilot, lambda: type(app.screen).__name__ == "ReasonDialog")
        assert "3 pass criteria not met: the run ends GO-OVERRIDE" in str(
            app.screen.query_one("#reason-title").render()
        )
        await pilot.press("enter")
        assert "a reason is required" in str(app.screen.query_one("#reason-error").render())
        await pilot.press(*"evidence read", "enter")

        # the second confirmation names each unmet criterion; Esc there signs nothing
        assert await until(pilot, lambda: isinstance(app.screen, OverrideDialog))
        title = str(app.screen.query_one("#override-title").render())
        assert "GO at the final gate B.release over 3 unmet pass criteria" in title
        named = str(app.screen.query_one("#override-criteria").render())
        for label in (
            "✗ evidence completeness (death trace + recovery chain + context profile)",
            "✗ comparative result (baseline vs post-training)",
            "✗ recursive audit verdict = GO",
        ):
            assert label in named
        assert "no audit is bound to the final gate B.release" in named
        await pilot.press("escape")
        assert await until(pilot, lambda: isinstance(app.screen, AuditScreen))
        assert await until(pilot, lambda: any("override was not signed" in str(n.message) for n in app._notifications))
        assert not any(b'"gate_decided"' in line for line in (supervisor / "journal.jsonl").read_bytes().splitlines())

        await pilot.press("a", *"evidence read", "enter")
        assert await until(pilot, lambda: isinstance(app.screen, OverrideDialog))
        await pilot.press(*"yes", "enter")
        assert "type override to sign" in str(app.screen.query_one("#override-error").render())
        await pilot.press("backspace", "backspace", "backspace", *"override", "enter")
        assert await until(pilot, lambda: isinstance(app.screen, AuditScreen))
        assert await until(
            pilot, lambda: (audit.current_gate() or None) is not None and audit.current_gate().state == "decided"
        )  # type: ignore[union-attr]
        gate = audit.current_gate()
        assert gate is not None and gate.decision == "go" and gate.operator == "alice" and gate.override
        assert gate.reason == "evidence read"
        assert await until(pilot, lambda: "GO-OVERRIDE signed by alice" in str(audit.query_one("#decision").render()))
        assert "OVERRIDE of unmet pass criteria: evidence completeness" in str(audit.query_one("#decision").render())
        await pilot.press("r")
        assert await until(pilot, lambda: any("not waiting" in str(n.message) for n in app._notifications))
        await pilot.press("1")  # the override stays in sight on the dashboard: board and headline
        assert await until(pilot, lambda: type(app.screen).__name__ == "DashboardScreen")
        assert await until(pilot, lambda: "GO by alice: OVERRIDE" in rendered(app.screen.query_one("#board")))
        assert "B.release GO by alice: OVERRIDE of unmet pass criteria" in rendered(app.screen.query_one("#headline"))
    events = [json.loads(line) for line in (supervisor / "journal.jsonl").read_text().splitlines()]
    decided = [e for e in events if e["type"] == "gate_decided"]
    assert len(decided) == 1 and decided[0]["payload"]["operator"] == "alice" and decided[0]["payload"]["override"]
    with pytest.raises(ApprovalError, match=r"not waiting|no supervisor"):
        SessionSource(supervisor, operator="bob").approve("B.release", "no-go", "too late")


async def test_confirmed_override_is_refused_when_the_project_forbids_it(tmp_path: Path) -> None:
    plan = '[project]\nname = "strict"\nfinal_override = false\n' + ONE_GATE_PLAN
    with running_supervisor(tmp_path, plan) as session:
        source = SessionSource(session, operator="alice")
        app = PhasefApp(source, blink=False, initial="audit")
        async with app.run_test(size=(100, 30)) as pilot:
            audit = app.screen
            assert isinstance(audit, AuditScreen)
            assert await until(pilot, lambda: audit.current_gate() is not None)
            await pilot.press("a", *"ship it", "enter")
            assert await until(pilot, lambda: isinstance(app.screen, OverrideDialog))
            await pilot.press(*"override", "enter")
            assert await until(pilot, lambda: any("not signed" in str(n.title) for n in app._notifications))
            message = " ".join(str(n.message) for n in app._notifications)
            assert "forbids overrides there ([project] final_override = false)" in message
            assert "recursive audit verdict = GO" in message
            assert await until(
                pilot, lambda: "refused: alice: GO refused" in str(audit.query_one("#decision").render())
            )
            gate = audit.current_gate()
            assert gate is not None and gate.state == "waiting"
        events = [json.loads(line) for line in (session / "journal.jsonl").read_text().splitlines()]
        assert [e["type"] for e in events].count("gate_refused") == 1
        assert not any(e["type"] == "gate_decided" for e in events)


async def test_a_finished_session_settles_stops_frames_and_wakes_on_resume(tmp_path: Path) -> None:
    """Nothing polls on a finished session once its traces are indexed; a resume (journal appended) wakes it."""
    from tests.tui_helpers import sample_records, write_trace

    folder = write_session(tmp_path / "s1")
    (folder / "artifacts" / "A" / "eval").mkdir(parents=True)
    write_trace(folder / "artifacts" / "A" / "eval" / "dirty_trace.jsonl", sample_records())
    with Journal(folder, fsync=False) as journal:
        journal.append("run_finished", payload={"state": "completed"})
    source = SessionSource(folder, operator="tester")
    assert source.finished and not source.clocks_running
    app = PhasefApp(source, blink=False, initial="traces")
    async with app.run_test(size=(120, 40)) as pilot:
        assert await until(pilot, lambda: app.pace.paused, timeout=10)
        feed = source.feed
        assert feed is not None and feed.settled, "the trace is indexed and no longer followed"
        frames = app.frames
        await pilot.pause(0.5)
        assert app.frames == frames, "no frames while settled"
        with Journal(folder, fsync=False) as journal:  # the session is resumed
            journal.append("session_started", payload={"plan": PLAN, "pid": os.getpid()})
        assert await until(pilot, lambda: app.frames > frames, timeout=5), "the journal change woke the frames"
        assert await until(pilot, lambda: not source.finished and not feed.settled, timeout=5)
    source.stop()


async def test_a_quiet_live_session_slows_its_frames_keeps_its_clocks_and_wakes_on_a_change(tmp_path: Path) -> None:
    """A gate waiting (a live session where nothing happens for hours): frames drop to ``LIVE_IDLE_RATE``, the
    board's clock still ticks each second, and a key or a journal event brings the full rate back at once."""
    import re

    from phasef_tui.app import FRAME_RATE
    from phasef_tui.frame_pace import LIVE_IDLE_RATE

    with running_supervisor(tmp_path, ONE_GATE_PLAN) as session:
        source = SessionSource(session, operator="alice")
        app = PhasefApp(source, blink=False)
        async with app.run_test(size=(120, 35)) as pilot:
            assert await until(pilot, lambda: app.pace.slowed)
            assert not app.pace.paused and not source.settled()  # (live: frames slow down, never stop)
            frames, began = app.frames, time.monotonic()
            await pilot.pause(2.0)
            rate = (app.frames - frames) / (time.monotonic() - began)
            assert rate < (LIVE_IDLE_RATE + FRAME_RATE) / 2, rate
            board = app.screen.query_one("#board")

            def waited() -> float:
                row = next(line for line in rendered(board).splitlines() if "release" in line)
                return float(re.findall(r"(\d+\.\d)s", row)[-1])

            before = waited()
            assert await until(pilot, lambda: waited() >= before + 1.0, timeout=5), "the gate's clock ticks"
            assert app.pace.slowed

            await pilot.press("down")  # a key: the full rate at once
            assert not app.pace.slowed
            assert await until(pilot, lambda: app.pace.slowed)  # quiet again

            signed = source.approve("B.release", "go", "evidence read", override=True)
            assert "signed" in signed
            # the journal's reader reports the event: the full rate is back (then the finished run settles)
            assert await until(pilot, lambda: not app.pace.slowed, timeout=5)
            assert await until(pilot, lambda: "GO by alice" in rendered(app.screen.query_one("#headline")))
            assert await until(pilot, lambda: app.pace.paused, timeout=15)
        source.stop()
