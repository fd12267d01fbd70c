"""The audit step end to end, with CLI auditor doubles that are real programs reading the real prompt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.audit.packet import packet_sha256
from pipeline.jobs.context import StepFailed
from tests.test_audit_support import Session, write_trace


@pytest.fixture
def session(tmp_path: Path) -> Session:
    return Session(tmp_path)


def test_go_and_go_is_go_bound_to_the_packet(session: Session) -> None:
    session.double("first", ["go"])
    session.double("second", ["go"], by_file=True)
    summary, outcome = session.run()
    assert outcome.verdict == "GO" and summary["verdict"] == "GO"
    assert not outcome.green_only and outcome.stage == "baseline"
    assert [(a.name, a.role, a.verdict) for a in outcome.auditors] == [
        ("first", "primary", "GO"),
        ("second", "recursive", "GO"),
    ]
    assert outcome.reasons[-1] == "both auditors GO in round 1"
    packet = session.dir / outcome.packet_path
    assert packet_sha256(packet) == outcome.packet_sha256
    assert set(outcome.parts) == {
        "report",
        "trace",
        "death_traces",
        "recovery_chains",
        "context_profile",
        "trace_findings",
        "notes",
    }
    # the auditors read the packet with the hash the verdict is bound to, and the evidence in it
    prompt = session.prompts("first")[0]
    assert outcome.packet_sha256 in prompt
    assert '"reason": "fatal action"' in prompt and "Architect: death traces must be raw." in prompt
    for auditor in outcome.auditors:
        raw = session.dir / auditor.raw_output_path
        assert raw.is_file() and "```json" in raw.read_text()
        assert auditor.latency_s is not None and auditor.latency_s > 0


def test_recursive_auditor_receives_the_primary_verdict(session: Session) -> None:
    session.double("first", ["nogo"])
    session.double("second", ["nogo"])
    _, outcome = session.run()
    assert outcome.verdict == "NO-GO"
    recursive_prompt = session.prompts("second")[0]
    assert "blocker-log-first-call0" in recursive_prompt and "finding-log-first-call0" in recursive_prompt
    assert '"verdict": "NO-GO"' in recursive_prompt
    assert outcome.reasons[-1] == "both auditors NO-GO in round 1"
    assert "blocker-log-first-call0" in outcome.reasons[0]
    assert outcome.auditors[0].blockers == ["blocker-log-first-call0"]


@pytest.mark.parametrize(("first", "second"), [(["nogo"], ["go"]), (["go"], ["nogo"])])
def test_disagreement_until_the_round_limit_is_no_go_with_every_verdict_shown(
    session: Session, first: list[str], second: list[str]
) -> None:
    session.double("first", first)
    session.double("second", second)
    session.params["rounds"] = 2
    _, outcome = session.run()
    assert outcome.verdict == "NO-GO"
    assert len(outcome.auditors) == 4
    assert "round limit reached" in outcome.reasons[-1]
    # in round 2 the primary is shown the recursive auditor's round-1 verdict
    assert "finding-log-second-call0" in session.prompts("first")[1]


def test_disagreement_resolved_in_a_later_round_can_go(session: Session) -> None:
    session.double("first", ["go"])
    session.double("second", ["nogo", "go"])
    session.params["rounds"] = 3
    _, outcome = session.run()
    assert outcome.verdict == "GO"
    assert [a.verdict for a in outcome.auditors] == ["GO", "NO-GO", "GO", "GO"]
    assert outcome.reasons[-1] == "both auditors GO in round 2"
    assert len(session.prompts("first")) == 2


def test_garbage_answer_is_invalid_and_its_raw_output_is_kept(session: Session) -> None:
    session.double("first", ["garbage"])
    session.double("second", ["go"])
    _, outcome = session.run()
    assert outcome.verdict == "INVALID"
    first = outcome.auditors[0]
    assert first.verdict == "INVALID" and first.error == "no JSON object in the answer"
    assert "garbage-log-first-call0" in (session.dir / first.raw_output_path).read_text()
    # the recursive auditor is told the primary gave no verdict, and sees what it said
    assert "No valid verdict: INVALID" in session.prompts("second")[0]
    assert "garbage-log-first-call0" in session.prompts("second")[0]
    assert any("INVALID counts as NO-GO" in r for r in outcome.reasons)
    # the gate's reasons show what the auditor said, and where the whole answer is (inside the session)
    shown = outcome.reasons[0]
    assert "garbage-log-first-call0 lorem ipsum" in shown
    assert "(raw output: artifacts/B/audit/auditors/round1-primary-first.txt)" in shown


def test_hanging_auditor_times_out_is_killed_and_the_gate_is_no_go(session: Session) -> None:
    session.double("first", ["hang"], timeout=1.5)
    session.double("second", ["go"])
    started = time.monotonic()
    _, outcome = session.run()
    assert time.monotonic() - started < 15
    assert outcome.verdict == "NO-GO"
    first = outcome.auditors[0]
    assert first.verdict == "TIMEOUT" and "no answer within 1.5 s" in (first.error or "")
    assert (session.dir / first.raw_output_path).read_text() == "thinking...\n"  # partial output kept
    pid = int((session.root / "log-first" / "pid-0").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert any("no answer counts as NO-GO" in r for r in outcome.reasons)


def test_failing_command_is_retried_then_blocks(session: Session) -> None:
    session.double("first", ["fail"], retries=1)
    session.double("second", ["go"])
    _, outcome = session.run()
    assert outcome.verdict == "BLOCKED"
    first = outcome.auditors[0]
    assert first.verdict == "BLOCKED" and first.error == "exit code 3: quota exceeded"
    assert len(session.prompts("first")) == 2
    kept = sorted(p.name for p in (session.dir / first.raw_output_path).parent.glob("round1-primary-first*"))
    assert {"round1-primary-first.attempt1.txt", "round1-primary-first.attempt1.stderr.txt"} <= set(kept)
    assert "round1-primary-first.stderr.txt" in kept


def test_missing_command_blocks_before_anyone_is_asked(session: Session) -> None:
    session.double("first", ["go"])
    session.auditors["second"] = {"kind": "cli", "command": ["no-such-auditor-cli-xyz", "-y"]}
    summary, outcome = session.run()
    assert outcome.verdict == "BLOCKED" and summary["verdict"] == "BLOCKED"
    assert [(a.name, a.verdict) for a in outcome.auditors] == [("second", "BLOCKED")]
    assert "command 'no-such-auditor-cli-xyz' not found on PATH" in (outcome.auditors[0].error or "")
    assert session.prompts("first") == []


def test_unset_key_blocks_and_a_set_key_never_reaches_the_record(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUDIT_TEST_KEY", raising=False)
    session.double("first", ["leak"], key_env="AUDIT_TEST_KEY")
    session.double("second", ["go"])
    _, outcome = session.run()
    assert outcome.verdict == "BLOCKED"
    assert "environment variable AUDIT_TEST_KEY is not set" in outcome.reasons[0]
    assert session.prompts("first") == [] and session.prompts("second") == []

    monkeypatch.setenv("AUDIT_TEST_KEY", "sk-test-secret-123456")
    _, outcome = session.run(attempt=2)
    assert outcome.verdict == "GO"
    raw = (session.dir / outcome.auditors[0].raw_output_path).read_text()
    assert "my key is ***" in raw
    artifacts = session.dir / "artifacts"
    assert not any(
        "sk-test-secret-123456" in p.read_text(errors="replace") for p in artifacts.rglob("*") if p.is_file()
    )


@pytest.mark.parametrize(
    ("change", "missing"),
    [
        ({"deaths": False}, "no death traces"),
        ({"chains": False}, "no recovery chains"),
        ({"context": False}, "no context profile"),
    ],
)
def test_missing_deep_water_evidence_is_green_only_no_go_without_asking(
    session: Session, change: dict[str, bool], missing: str
) -> None:
    write_trace(session.evidence / "trace.jsonl", **change)
    session.double("first", ["go"])
    session.double("second", ["go"])
    summary, outcome = session.run()
    assert outcome.verdict == "NO-GO" and outcome.green_only and summary["green_only"]
    assert any(missing in r for r in outcome.reasons)
    assert outcome.auditors == []
    assert session.prompts("first") == [] and session.prompts("second") == []
    assert packet_sha256(session.dir / outcome.packet_path) == outcome.packet_sha256


def test_final_gate_needs_the_comparison(session: Session) -> None:
    session.double("first", ["go"])
    session.double("second", ["go"])
    session.params.update(stage="final", comparison="evidence/comparison.json")
    _, outcome = session.run()
    assert outcome.verdict == "GO" and "comparison" in outcome.parts and outcome.stage == "final"
    (session.evidence / "comparison.json").unlink()
    _, outcome = session.run(attempt=2)
    assert outcome.verdict == "NO-GO" and outcome.green_only
    assert any("baseline-vs-fine-tuned comparison not found" in r for r in outcome.reasons)
    assert len(session.prompts("first")) == 1
    # nothing of the first attempt is left to be mistaken for this one's
    assert list((session.dir / "artifacts" / "B" / "audit" / "auditors").iterdir()) == []
    listed = [part["name"] for part in json.loads((session.dir / outcome.packet_path).read_text())["parts"]]
    assert "comparison" not in listed and "report" in listed


def test_missing_report_or_trace_is_green_only(session: Session) -> None:
    session.double("first", ["go"])
    session.double("second", ["go"])
    session.params.update(report="evidence/absent.json", trace="evidence/absent.jsonl")
    _, outcome = session.run()
    assert outcome.verdict == "NO-GO" and outcome.green_only
    assert any("eval report not found" in r for r in outcome.reasons)
    assert any("dirty trace (raw JSONL) not found" in r for r in outcome.reasons)


def test_one_byte_of_evidence_changes_the_packet_hash_and_breaks_the_binding(session: Session) -> None:
    session.double("first", ["go"])
    session.double("second", ["go"])
    _, before = session.run()
    packet = session.dir / before.packet_path
    report = session.evidence / "report.json"
    raw = bytearray(report.read_bytes())
    raw[-2] ^= 0x01
    report.write_bytes(bytes(raw))
    assert packet_sha256(packet) != before.packet_sha256  # a gate holding `before` must refuse a decision now
    _, after = session.run(attempt=2)
    assert after.packet_sha256 != before.packet_sha256
    assert after.parts["report"] != before.parts["report"]
    assert {k: v for k, v in after.parts.items() if k != "report"} == {
        k: v for k, v in before.parts.items() if k != "report"
    }


def test_bad_config_fails_the_step(session: Session) -> None:
    session.double("first", ["go"])
    with pytest.raises(StepFailed, match="auditor 'second' is not defined"):
        session.run()
    session.auditors["second"] = {"kind": "cli", "commnd": "x"}
    with pytest.raises(StepFailed, match=r"auditors\.second\.commnd: unknown key"):
        session.run()
    session.double("second", ["go"])
    session.params["rounds"] = 0
    with pytest.raises(StepFailed, match="rounds"):
        session.run()


def test_cancelling_the_step_kills_a_hanging_auditor(session: Session) -> None:
    """The engine stops a step with SIGTERM to its process group; the auditor runs in a session of its own, so
    the step must take it down itself."""
    session.double("first", ["hang"])
    session.double("second", ["go"])
    ctx = session.context()
    ctx_file = session.root / "audit.ctx.json"
    ctx_file.write_text(ctx.model_dump_json())
    step = subprocess.Popen(
        [sys.executable, "-m", "pipeline.jobs.run_function", str(ctx_file), "pipeline.audit.step:run"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    pid_file = session.root / "log-first" / "pid-0"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    auditor = int(pid_file.read_text())
    os.killpg(step.pid, signal.SIGTERM)
    assert step.wait(timeout=10) == 143
    with pytest.raises(ProcessLookupError):
        os.kill(auditor, 0)
    assert "cancelled" in (session.root / "audit.result.json").read_text()


def test_auditor_that_cannot_start_blocks(session: Session) -> None:
    broken = session.root / "broken-auditor"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    session.auditors["first"] = {"kind": "cli", "command": [str(broken)]}
    session.double("second", ["go"])
    _, outcome = session.run()
    assert outcome.verdict == "BLOCKED"
    assert f"cannot start '{broken}'" in (outcome.auditors[0].error or "")
