"""The real ``phasef run --headless`` in child processes: gates, approvals, exit codes, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.spine_helpers import (
    MAKE_AND_GATE_PLAN,
    ROOT,
    approve,
    has_event,
    journal_events,
    phasef,
    spawn,
    wait_for,
    write_plan,
)


def _sample(tmp_path: Path) -> Path:
    text = (ROOT / "examples" / "sample-shell.toml").read_text().replace('"../sessions"', '"sessions"')
    return write_plan(tmp_path, text)


def test_sample_plan_gate_released_by_approve_from_another_process(tmp_path: Path) -> None:
    _sample(tmp_path)
    proc = spawn("run", "--headless", "--session", "demo", cwd=tmp_path)
    session = tmp_path / "sessions" / "demo"
    wait_for(lambda: has_event(session, "gate_opened", "C.release"), 60, "the gate to open")
    status = json.loads(phasef("status", "demo", "--json", cwd=tmp_path).stdout)
    assert status["source"] == "supervisor"
    assert status["gates"] == [
        {
            "id": "C.release",
            "state": "waiting",
            "decision": None,
            "operator": None,
            "reason": None,
            "override": False,
            "final": True,
            "evidence_sha256": status["gates"][0]["evidence_sha256"],
            "decided_at": None,
        }
    ]
    # a decision without a reason, and one on an unknown gate, are refused
    assert approve(tmp_path, "demo", "nope", "go", "a", "x").returncode == 1
    # the sample plan has no comparison and no audit: its GO overrides the pass criteria, and must say so
    sign = ("approve", "demo", "release", "--decision", "go", "--as", "alice", "--reason", "ok")
    r = phasef(*sign, cwd=tmp_path)
    assert r.returncode == 1 and "would override unmet pass criteria" in r.stderr, r.stderr
    r = phasef(*sign, "--override", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "GO signed by alice as an OVERRIDE of unmet pass criteria" in r.stdout
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 4, out
    status = json.loads(phasef("status", "demo", "--json", cwd=tmp_path).stdout)
    assert status["source"] == "journal" and status["state"] == "completed"
    assert status["final_decision"] == "GO-OVERRIDE" and status["exit_code"] == 4
    steps = {f"{s['stage']}.{s['step']}": s for s in status["steps"]}
    assert steps["A.flaky"]["attempts"] == 2 and steps["A.flaky"]["state"] == "succeeded"
    assert steps["B.slow"]["attempts"] == 2  # the first attempt hung and was killed by the timeout
    assert status["gates"][0]["decision"] == "go" and status["gates"][0]["operator"] == "alice"
    failed = [e for e in journal_events(session) if e["type"] == "step_failed"]
    assert any(e["payload"].get("timed_out") for e in failed if e["step"] == "slow")
    assert (session / "config.resolved.toml").exists()
    assert (session / "logs" / "A.flaky.1.log").read_text().strip() == "transient failure"
    # a second decision on a decided gate is refused from the journal: no supervisor runs any more
    r = approve(tmp_path, "demo", "release", "no-go", "bob", "late")
    assert r.returncode == 1 and "gate C.release is not waiting: decided by alice (go)" in r.stderr


GATE_PLAN = (
    '[project]\nname = "g"\n'
    + MAKE_AND_GATE_PLAN
    + """
[stages.A.steps.after]
kind = "shell"
command = "echo after > after.txt"
needs = ["gate"]
"""
)


def test_no_go_exits_3_and_blocks_dependents(tmp_path: Path) -> None:
    write_plan(tmp_path, GATE_PLAN.format(timeout=600))
    proc = spawn("run", "--headless", "--session", "s", cwd=tmp_path)
    session = tmp_path / "sessions" / "s"
    wait_for(lambda: has_event(session, "gate_opened"), 30, "gate")
    r = approve(tmp_path, "s", "A.gate", "no-go", "carol", "bad")
    assert r.returncode == 0, r.stderr
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3, out
    status = json.loads(phasef("status", "s", "--json", cwd=tmp_path).stdout)
    assert status["final_decision"] == "NO-GO"
    assert {s["step"]: s["state"] for s in status["steps"]}["after"] == "blocked"
    assert not (session / "after.txt").exists()


def test_gate_timeout_is_no_go(tmp_path: Path) -> None:
    write_plan(tmp_path, GATE_PLAN.format(timeout=0.5))
    r = phasef("run", "--headless", "--session", "t", cwd=tmp_path, timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    status = json.loads(phasef("status", "t", "--json", cwd=tmp_path).stdout)
    assert status["gates"][0]["state"] == "timed_out" and status["gates"][0]["decision"] == "no-go"


def test_changed_evidence_refuses_the_decision(tmp_path: Path) -> None:
    write_plan(tmp_path, GATE_PLAN.format(timeout=600))
    proc = spawn("run", "--headless", "--session", "e", cwd=tmp_path)
    session = tmp_path / "sessions" / "e"
    wait_for(lambda: has_event(session, "gate_opened"), 30, "gate")
    (session / "e.txt").write_text("tampered\n")
    r = approve(tmp_path, "e", "A.gate", "go", "dave", "ok")
    assert r.returncode == 1 and "evidence changed since the gate opened: e.txt" in r.stderr
    assert phasef("cancel", "e", "--as", "dave", cwd=tmp_path).returncode == 0
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1, out
    assert any(e["type"] == "gate_refused" for e in journal_events(session))
    assert not any(e["type"] == "gate_decided" for e in journal_events(session))


def test_unchanged_steps_are_skipped_on_the_next_run(tmp_path: Path) -> None:
    write_plan(
        tmp_path,
        '[stages.A]\ntitle = "A"\n[stages.A.steps.one]\nkind = "shell"\ncommand = "date +%s%N > one.txt"\n'
        'outputs = ["one.txt"]\n[stages.A.steps.two]\nkind = "shell"\ncommand = "cp one.txt two.txt"\n'
        'needs = ["one"]\ninputs = ["one.txt"]\noutputs = ["two.txt"]\n',
    )
    assert phasef("run", "--headless", "--session", "c", cwd=tmp_path).returncode == 0
    session = tmp_path / "sessions" / "c"
    first = (session / "two.txt").read_text()
    r = phasef("run", "--headless", "--session", "c", cwd=tmp_path)
    assert r.returncode == 0
    skipped = [e for e in journal_events(session) if e["type"] == "step_skipped"]
    assert {e["step"] for e in skipped} == {"one", "two"}
    assert all(e["payload"]["reason"] == "fingerprint and output hashes unchanged" for e in skipped)
    (session / "one.txt").write_text("changed\n")  # an output changed: both steps run again
    assert phasef("run", "--headless", "--session", "c", cwd=tmp_path).returncode == 0
    assert (session / "two.txt").read_text() != first
    assert (session / "two.txt").read_text() == (session / "one.txt").read_text()
    started = [e for e in journal_events(session) if e["type"] == "step_started"]
    assert [e["step"] for e in started] == ["one", "two", "one", "two"]


KILL_PLAN = """
[stages.A]
title = "A"

[stages.A.steps.quick]
kind = "shell"
command = "echo quick > quick.txt"
outputs = ["quick.txt"]

[stages.A.steps.long]
kind = "shell"
command = "sleep 8; echo long > long.txt"
needs = ["quick"]
outputs = ["long.txt"]

[stages.B]
title = "B"
needs = ["A"]

[stages.B.steps.gate]
kind = "gate"
evidence = ["long.txt"]

[stages.B.steps.slow-after]
kind = "shell"
command = "sleep 2; echo done > after.txt"
needs = ["gate"]
outputs = ["after.txt"]
"""


def _kill(proc) -> None:  # type: ignore[no-untyped-def]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_sigkill_mid_step_then_resume(tmp_path: Path) -> None:
    write_plan(tmp_path, KILL_PLAN)
    session = tmp_path / "sessions" / "k"
    proc = spawn("run", "--headless", "--session", "k", cwd=tmp_path)
    wait_for(lambda: has_event(session, "step_started", "A.long"), 30, "A.long to start")
    quick_mtime = (session / "quick.txt").stat().st_mtime_ns
    _kill(proc)  # the supervisor dies in the middle of A.long; A.long's own process lives on
    r = phasef("status", "k", "--json", cwd=tmp_path)
    assert json.loads(r.stdout)["state"] == "interrupted"

    proc = spawn("run", "--headless", "--resume", "k", cwd=tmp_path)
    wait_for(lambda: has_event(session, "gate_opened", "B.gate"), 30, "the gate")
    events = journal_events(session)
    assert [e["payload"]["alive"] for e in events if e["type"] == "step_reattached"] == [True]
    assert (session / "quick.txt").stat().st_mtime_ns == quick_mtime  # the finished step did not run again
    assert [e["step"] for e in events if e["type"] == "step_started"].count("quick") == 1
    assert [e["step"] for e in events if e["type"] == "step_started"].count("long") == 1
    r = approve(tmp_path, "k", "B.gate", "go", "erin", "ok", "--override")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: has_event(session, "step_started", "B.slow-after"), 30, "B.slow-after")
    _kill(proc)  # killed again, after the decision and during a step whose process we then kill too
    events = journal_events(session)
    pid = [e for e in events if e["type"] == "step_started" and e["step"] == "slow-after"][-1]["payload"]["pid"]
    os.killpg(pid, signal.SIGKILL)
    time.sleep(0.2)

    r = phasef("run", "--headless", "--resume", "k", cwd=tmp_path, timeout=60)
    assert r.returncode == 4, r.stdout + r.stderr  # GO-OVERRIDE: the plan has no comparison and no audit
    events = journal_events(session)
    assert sum(e["type"] == "gate_decided" for e in events) == 1
    assert sum(e["type"] == "gate_opened" for e in events) == 1
    assert (session / "quick.txt").stat().st_mtime_ns == quick_mtime
    after = [e for e in events if e["step"] == "slow-after" and e["type"] in ("step_started", "step_failed")]
    assert [e["type"] for e in after] == ["step_started", "step_failed", "step_started"]
    assert after[1]["payload"].get("interrupted") is True
    status = json.loads(phasef("status", "k", "--json", cwd=tmp_path).stdout)
    assert status["state"] == "completed" and status["final_decision"] == "GO-OVERRIDE" and not status["problems"]


def test_a_decided_gate_is_asked_again_only_when_its_evidence_changed(tmp_path: Path) -> None:
    write_plan(tmp_path, GATE_PLAN.format(timeout=600))
    session = tmp_path / "sessions" / "r"
    for round_, text in enumerate(["evidence", "evidence", "new evidence"]):
        if round_ == 2:
            write_plan(tmp_path, GATE_PLAN.format(timeout=600).replace("echo evidence", f"echo {text}"))
        proc = spawn("run", "--headless", "--session", "r", cwd=tmp_path)
        if round_ != 1:
            opened = sum(e["type"] == "gate_opened" for e in journal_events(session))
            wait_for(lambda n=opened: sum(e["type"] == "gate_opened" for e in journal_events(session)) > n, 30, "gate")
            r = approve(tmp_path, "r", "A.gate", "go", "fay", "ok", "--override")
            assert r.returncode == 0, r.stderr
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 4, out
    opened = [e for e in journal_events(session) if e["type"] == "gate_opened"]
    assert len(opened) == 2  # the unchanged second run did not ask again
    assert opened[1]["payload"]["reopened"].startswith("the evidence changed since the decided decision")
    assert sum(e["type"] == "gate_decided" for e in journal_events(session)) == 2


def test_cancelling_a_step_gives_it_time_to_save(tmp_path: Path) -> None:
    write_plan(
        tmp_path,
        '[project]\nstep_functions = ["tests.spine_steps:slow_saver"]\n'
        '[stages.A]\ntitle = "A"\n[stages.A.steps.work]\nkind = "builtin"\nfunction = "tests.spine_steps:slow_saver"\n',
    )
    session = tmp_path / "sessions" / "x"
    proc = subprocess.Popen(
        [sys.executable, "-m", "phasef_tui.cli", "run", "--headless", "--session", "x"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wait_for(lambda: has_event(session, "step_progress", "A.work"), 30, "the step to work")
    r = phasef("cancel", "x", "--step", "A.work", "--as", "gus", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1, out
    assert (session / "artifacts" / "A" / "work" / "saved.txt").read_text() == "checkpoint\n"
    events = journal_events(session)
    assert [e["type"] for e in events if e.get("step") == "work"][-1] == "step_cancelled"
