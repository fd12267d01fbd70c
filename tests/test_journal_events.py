"""Typed journal events: every line is checked against its type's model; old journals still replay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.events import EVENT_TYPES, SCHEMA_VERSION, GateDecided, StepRetryRequested, StepStarted
from pipeline.journal import Event, Journal, JournalProblem, JournalTail, read_journal
from pipeline.state import load_state, replay

FIXTURE = Path(__file__).parent / "fixtures" / "journal-v1.jsonl"
"""Written by phasef before the journal had typed events (three runs: a retry, a refused and a signed decision, a
cache skip, a torn line repaired, a cancelled step blocking the gate); ``journal-v1.state.json`` beside it is the
state that same version replayed from it."""


def test_a_journal_written_before_typed_events_replays(tmp_path: Path) -> None:
    items = list(read_journal(FIXTURE))
    assert all(isinstance(i, Event) for i in items), [str(i) for i in items if isinstance(i, JournalProblem)]
    assert {i.type for i in items if isinstance(i, Event)} <= EVENT_TYPES
    session = tmp_path / "old"
    session.mkdir()
    shutil.copy(FIXTURE, session / "journal.jsonl")
    state = load_state(session)
    assert state.problems == []
    assert state.state == "cancelled" and state.exit_code == 1 and state.final_decision == "GO"
    assert {k: s.state for k, s in state.steps.items()} == {
        "A.ok": "skipped",
        "A.flaky": "skipped",
        "A.slow": "cancelled",
        "B.release": "blocked",
    }
    gate = state.gates["B.release"]
    assert (gate.decision, gate.operator, gate.key_fingerprint) == ("go", "alice", "SHA256:abc")
    assert len(gate.refusals) == 1 and "different evidence" in gate.refusals[0]["reason"]
    assert state.steps["A.ok"].progress == [{"event": "tick", "n": 1, "_attempt": 1, "_line": 1}]
    assert state.steps["A.flaky"].attempts == 2
    # exactly the state the version that wrote it replayed (kept beside the journal), field for field
    before = json.loads(FIXTURE.with_suffix(".state.json").read_text())
    now = state.model_dump(mode="json")
    for st in now["steps"].values():
        assert st.pop("handle") is None  # fields added since: the step's job handle,
    for gate in now["gates"].values():
        assert gate.pop("criteria") is None  # and the pass criteria a final gate judges (none in this journal)
    assert now == before
    # the typed view of the same lines
    started = [i.typed() for i in items if isinstance(i, Event) and i.type == "step_started"]
    assert all(isinstance(t, StepStarted) and t.payload.pid for t in started)
    decided = next(i.typed() for i in items if isinstance(i, Event) and i.type == "gate_decided")
    assert isinstance(decided, GateDecided) and decided.payload.override is False


def test_new_events_carry_the_schema_version_and_replay_the_same(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        j.append("session_started", payload={"pid": 1, "plan": [{"stage": "A", "step": "s", "kind": "shell"}]})
        j.append("step_started", stage="A", step="s", attempt=1, payload={"pid": 7, "handle": {"pid": 7}})
        j.append("step_progress", stage="A", step="s", attempt=1, payload={"event": "tick", "_line": 1, "n": 2})
    lines = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [line["v"] for line in lines] == [SCHEMA_VERSION] * 3
    state = replay(read_journal(tmp_path / "journal.jsonl"), "s")
    st = state.steps["A.s"]
    assert (st.state, st.pid, st.handle) == ("running", 7, {"pid": 7})
    assert st.progress == [{"event": "tick", "_line": 1, "n": 2}]


def _lines(tmp_path: Path, *events: dict[str, object]) -> Path:
    path = tmp_path / "journal.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def test_unknown_types_newer_versions_and_bad_payloads_are_problems_with_their_line(tmp_path: Path) -> None:
    ok = {"seq": 1, "ts": "t", "type": "run_cancel_requested", "payload": {"operator": "erin"}}
    path = _lines(
        tmp_path,
        ok,
        {"seq": 2, "ts": "t", "type": "step_teleported", "stage": "A", "step": "s", "payload": {}},
        {"v": SCHEMA_VERSION + 1, "seq": 3, "ts": "t", "type": "run_cancel_requested", "payload": {}},
        {"seq": 4, "ts": "t", "type": "gate_decided", "stage": "B", "step": "g", "payload": {"decision": "maybe"}},
        {"seq": 5, "ts": "t", "type": "service_started", "payload": {"url": "http://127.0.0.1:1"}},
    )
    items = list(read_journal(path))
    assert isinstance(items[0], Event)
    problems = [str(i) for i in items if isinstance(i, JournalProblem)]
    assert problems == [
        f"{path}:2: unknown event type 'step_teleported' (from a newer phasef?); skipped",
        f"{path}:3: event schema v{SCHEMA_VERSION + 1} is newer than this phasef reads (v{SCHEMA_VERSION}); skipped",
        f"{path}:4: gate_decided: field 'payload.decision': Input should be 'go' or 'no-go'",
        f"{path}:5: service_started: field 'payload.name': Field required",
    ]
    state = replay(items, "s")
    assert state.problems == problems and state.gates == {} and state.services == {}
    tail = JournalTail(path)  # the live reader says the same
    assert [str(i) for i in tail.poll() if isinstance(i, JournalProblem)] == problems


def test_the_headless_printer_reads_typed_events() -> None:
    from phasef_tui.headless import _plain_line

    events = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.endswith("}")]
    lines = [_plain_line(e, "old") for e in events]
    assert "B.release: GO by alice: looks right" in lines
    assert "A.flaky: FAILED attempt 1: exit status 3; retry in " in next(x for x in lines if x and "FAILED" in x)
    assert lines[-1] == "run cancelled: final decision GO, exit 1 (cancelled: A.slow)"
    assert sum(x is None for x in lines) == sum(e["type"] in ("step_progress", "step_cancel_requested") for e in events)
    assert _plain_line({"seq": 1, "ts": "t", "type": "step_teleported", "payload": {}}, "old") is None


def test_retry_criteria_and_override_events_are_typed(tmp_path: Path) -> None:
    """The events of operator retries and of the final gate's pass criteria: typed, replayed, checked."""
    criteria = [{"criterion": "audit", "label": "audit GO", "met": False, "evidence": "verdict.json: NO-GO"}]
    path = _lines(
        tmp_path,
        {"seq": 1, "ts": "t", "type": "session_started", "payload": {"pid": 1, "final_gate": "B.g"}},
        {"seq": 2, "ts": "t", "type": "step_failed", "stage": "A", "step": "s", "attempt": 1, "payload": {}},
        {
            "seq": 3,
            "ts": "t",
            "type": "step_retry_requested",
            "stage": "A",
            "step": "s",
            "payload": {"operator": "ann", "reason": "flaky disk", "role": "approver"},
        },
        {"seq": 4, "ts": "t", "type": "gate_opened", "stage": "B", "step": "g", "payload": {"criteria": criteria}},
        {
            "seq": 5,
            "ts": "t",
            "type": "gate_decided",
            "stage": "B",
            "step": "g",
            "payload": {
                "decision": "go",
                "operator": "ann",
                "reason": "ok",
                "override": True,
                "unmet_criteria": ["audit"],
            },
        },
        {
            "seq": 6,
            "ts": "t",
            "type": "run_finished",
            "payload": {
                "state": "completed",
                "exit_code": 4,
                "final_decision": "GO-OVERRIDE",
                "report": ["report/final-decision.json"],
            },
        },
        {"seq": 7, "ts": "t", "type": "step_retry_requested", "stage": "A", "step": "s", "payload": {"reason": 3}},
        {"seq": 8, "ts": "t", "type": "run_finished", "payload": {"final_decision": "MAYBE"}},
    )
    items = list(read_journal(path))
    assert isinstance(items[2], Event) and isinstance(items[2].typed(), StepRetryRequested)
    assert items[2].typed().payload.operator == "ann"
    problems = [str(i) for i in items if isinstance(i, JournalProblem)]
    assert problems == [
        f"{path}:7: step_retry_requested: field 'payload.reason': Input should be a valid string",
        f"{path}:8: run_finished: field 'payload.final_decision': Input should be 'GO', 'GO-OVERRIDE' or 'NO-GO'",
    ]
    state = replay(items, "s")
    assert state.steps["A.s"].state == "failed"  # a retry request changes nothing until the step starts again
    gate = state.gates["B.g"]
    assert gate.criteria == criteria and gate.override is True
    assert (state.final_decision, state.exit_code) == ("GO-OVERRIDE", 4)
    assert state.public()["pass_criteria"][0]["met"] is False
    from phasef_tui.headless import _plain_line

    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert _plain_line(raw[2], "s") == "A.s: retry requested by ann: flaky disk"
    assert "pass criteria NOT met: audit GO (a GO needs --override)" in str(_plain_line(raw[3], "s"))
    assert _plain_line(raw[4], "s") == "B.g: GO by ann: ok (operator OVERRIDE of unmet pass criteria: audit)"
    assert _plain_line(raw[5], "s") == (
        "run completed: final decision GO-OVERRIDE, exit 4; report report/final-decision.json"
    )
