"""Retry a failed step and cancel a running one in a running session, over the control socket (``retry`` op)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.control import ControlClient
from pipeline.errors import ControlError
from tests.spine_helpers import approve, has_event, headless_run, journal_events, phasef, wait_for, write_plan

RETRY_PLAN = """
[stages.A]
title = "Work"

[stages.A.steps.fetch]
kind = "shell"
title = "fails until the operator has put the input in place"
command = "test -e {project}/ready && mkdir -p out && echo data > out/data.txt"
outputs = ["out/data.txt"]

[stages.A.steps.use]
kind = "shell"
needs = ["fetch"]
command = "cat out/data.txt"

[stages.A.steps.long]
kind = "shell"
command = "test -e {project}/fast || sleep 600"

[stages.B]
title = "Decision"

[stages.B.steps.release]
kind = "gate"
timeout = 3600
"""


def _state(session: Path, key: str) -> str:
    steps = json.loads(phasef("status", str(session), "--json", cwd=session.parent).stdout)["steps"]
    return next(s["state"] for s in steps if f"{s['stage']}.{s['step']}" == key)


def test_retry_a_failed_step_and_cancel_a_running_one(tmp_path: Path) -> None:
    write_plan(tmp_path, RETRY_PLAN)
    with headless_run(tmp_path, "x") as (proc, session):
        wait_for(lambda: has_event(session, "step_blocked", "A.use"), 60, "the failed step to block its dependent")
        wait_for(lambda: has_event(session, "gate_opened", "B.release"), 60, "the gate to open")
        assert _state(session, "A.fetch") == "failed" and _state(session, "A.long") == "running"

        client = ControlClient(session)
        with pytest.raises(ControlError, match="only approvers can retry"):
            client.request("retry", step="A.fetch", operator="val", role="viewer")
        with pytest.raises(ControlError, match=r"A\.use is blocked: only a failed or cancelled step"):
            client.request("retry", step="A.use", operator="ann")
        with pytest.raises(ControlError, match="is a gate"):
            client.request("retry", step="B.release", operator="ann")
        r = phasef("retry", "x", "--step", "A.nope", "--as", "ann", cwd=tmp_path)
        assert r.returncode == 1 and "no step 'A.nope'" in r.stderr

        (tmp_path / "ready").touch()
        r = phasef("retry", "x", "--step", "A.fetch", "--as", "ann", "--reason", "input restored", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "retry requested: A.fetch by ann" in r.stdout
        wait_for(lambda: has_event(session, "step_succeeded", "A.use"), 60, "the blocked step to run after the retry")
        assert _state(session, "A.fetch") == "succeeded"

        r = phasef("cancel", "x", "--step", "A.long", "--as", "ann", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: has_event(session, "step_cancelled", "A.long"), 60, "the running step to be cancelled")
        (tmp_path / "fast").touch()
        r = phasef("retry", "x", "--step", "A.long", "--as", "ann", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: has_event(session, "step_succeeded", "A.long"), 60, "the cancelled step to run again")

        r = approve(tmp_path, "x", "release", "go", "ann", "ok", "--override")
        assert r.returncode == 0, r.stderr
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 4, out  # GO-OVERRIDE: a one-gate plan has no comparison nor audit
    events = journal_events(session)
    asked = [e for e in events if e["type"] == "step_retry_requested"]
    assert [(e["stage"] + "." + e["step"], e["payload"]["operator"]) for e in asked] == [
        ("A.fetch", "ann"),
        ("A.long", "ann"),
    ]
    assert asked[0]["payload"]["reason"] == "input restored"
    assert any(e["type"] == "step_cancel_requested" and e["payload"]["operator"] == "ann" for e in events)
    fetch = [e for e in events if e.get("step") == "fetch" and e["type"] in ("step_started", "step_failed")]
    assert [(e["type"], e["attempt"]) for e in fetch] == [("step_started", 1), ("step_failed", 1), ("step_started", 2)]
    status = json.loads(phasef("status", "x", "--json", cwd=tmp_path).stdout)
    assert status["state"] == "completed" and status["exit_code"] == 4
    # the run is over: a retry has no supervisor to go to
    r = phasef("retry", "x", "--step", "A.fetch", "--as", "ann", cwd=tmp_path)
    assert r.returncode == 2 and "no supervisor is running" in r.stderr and "--resume" in r.stderr


async def test_retry_is_refused_once_nothing_else_runs(tmp_path: Path) -> None:
    from pipeline.config import parse_config
    from pipeline.engine import Engine

    plan = '[stages.A]\ntitle = "A"\n[stages.A.steps.bad]\nkind = "shell"\ncommand = "exit 3"\n'
    engine = Engine(parse_config(plan), session_dir=tmp_path / "s", project_dir=tmp_path)
    try:
        result = await engine.run()
        assert result.exit_code == 1
        with pytest.raises(ControlError, match="the run is over"):
            engine.retry("A.bad", operator="ann")
    finally:
        engine.journal.close()
    assert not any(e["type"] == "step_retry_requested" for e in journal_events(tmp_path / "s"))
