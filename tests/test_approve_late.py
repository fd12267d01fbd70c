"""``phasef approve`` after the supervisor has gone: the journal says what became of the gate, nothing is signed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.spine_helpers import (
    MAKE_AND_GATE_PLAN,
    approve,
    has_event,
    journal_events,
    phasef,
    spawn,
    wait_for,
    write_plan,
)

PLAN = MAKE_AND_GATE_PLAN


def _approve(session: str, gate: str, who: str, cwd: Path, decision: str = "go"):  # type: ignore[no-untyped-def]
    # a one-gate plan has no comparison nor audit: its GO is an override of the unmet pass criteria
    override = ("--override",) if decision == "go" else ()
    return approve(cwd, session, gate, decision, who, "late", *override)


def test_a_late_approval_of_a_decided_gate_names_who_decided_it_and_when(tmp_path: Path) -> None:
    write_plan(tmp_path, PLAN.format(timeout=600))
    session = tmp_path / "sessions" / "d"
    proc = spawn("run", "--headless", "--session", "d", cwd=tmp_path)
    wait_for(lambda: has_event(session, "gate_opened", "A.gate"), 30, "the gate")
    r = approve(tmp_path, "d", "A.gate", "go", "alice", "looks right", "--override")
    assert r.returncode == 0, r.stderr
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 4, out  # GO-OVERRIDE
    journal = (session / "journal.jsonl").read_bytes()
    decided_at = json.loads(phasef("status", "d", "--json", cwd=tmp_path).stdout)["gates"][0]["decided_at"]

    for gate in ("A.gate", "gate"):  # the full id, or the step name alone as with a live supervisor
        r = _approve("d", gate, "bob", tmp_path, decision="no-go")
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.startswith(
            f"refused: gate A.gate is not waiting: decided by alice (go) at {decided_at}, "
            "reason 'looks right' (an override); session d is completed since "
        ), r.stderr
    r = _approve("d", "nope", "bob", tmp_path)
    assert r.returncode == 1 and "no gate is named 'nope' in session d (gates opened: A.gate)" in r.stderr
    assert (session / "journal.jsonl").read_bytes() == journal  # nothing was written


def test_a_late_approval_of_a_timed_out_gate_says_so(tmp_path: Path) -> None:
    write_plan(tmp_path, PLAN.format(timeout=0.5))
    assert phasef("run", "--headless", "--session", "t", cwd=tmp_path, timeout=60).returncode == 3
    r = _approve("t", "A.gate", "carol", tmp_path)
    assert r.returncode == 1
    assert "refused: gate A.gate is not waiting: timed out at " in r.stderr
    assert "(no-go: no decision before the gate's timeout)" in r.stderr


def test_a_waiting_gate_without_a_supervisor_says_how_to_resume_and_that_advice_works(tmp_path: Path) -> None:
    write_plan(tmp_path, PLAN.format(timeout=600))
    session = tmp_path / "sessions" / "k"
    proc = spawn("run", "--headless", "--session", "k", cwd=tmp_path)
    wait_for(lambda: has_event(session, "gate_opened", "A.gate"), 30, "the gate")
    os.kill(proc.pid, signal.SIGKILL)  # the supervisor dies while the gate waits; its socket file stays behind
    proc.wait(10)
    r = _approve("k", "A.gate", "dave", tmp_path)
    assert r.returncode == 1
    assert "error: gate A.gate is waiting, but no supervisor is running for session k (interrupted" in r.stderr
    assert "nothing was signed" in r.stderr
    assert "`phasef run --resume k --detach`" in r.stderr
    assert not has_event(session, "gate_decided")

    # the advice, followed as written
    r = phasef("run", "--resume", "k", "--detach", cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        wait_for(lambda: _gate_state(tmp_path, "k") == "waiting", 30, "the gate to wait again")
        r = _approve("k", "A.gate", "dave", tmp_path)
        assert r.returncode == 0, r.stderr
        assert "A.gate: GO signed by dave" in r.stdout
        wait_for(lambda: has_event(session, "run_finished"), 30, "the run to finish")
    finally:
        for e in journal_events(session):
            if e["type"] == "session_started":
                try:
                    os.kill(e["payload"]["pid"], signal.SIGTERM)
                except ProcessLookupError:
                    pass
    decided = [e for e in journal_events(session) if e["type"] == "gate_decided"]
    assert len(decided) == 1 and decided[0]["payload"]["operator"] == "dave"


def _gate_state(cwd: Path, session: str) -> str | None:
    r = phasef("status", session, "--json", cwd=cwd)
    if r.returncode != 0:
        return None
    status = json.loads(r.stdout)
    return status["gates"][0]["state"] if status.get("source") == "supervisor" and status["gates"] else None
