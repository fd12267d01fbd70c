"""The pass-criteria rules on their own: what each criterion is judged on, when a GO is refused, the final report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.config import parse_config
from pipeline.journal import Event
from pipeline.report.criteria import (
    final_go_refusal,
    is_override,
    judge_audit,
    judge_comparison,
    write_final_report,
)
from pipeline.state import GateState, SessionState, replay

PLAN = """
[project]
final_override = {allowed}

[stages.E]
title = "E"
sequential = true

[stages.E.steps.comparison]
kind = "builtin"
function = "pipeline.report.compare:compare_step"
[stages.E.steps.comparison.params]
baseline = {{ report = "b.json" }}
finetuned = {{ report = "f.json" }}

[stages.E.steps.gate]
kind = "gate"
evidence = ["{evidence}"]
"""


def cfg(allowed: bool = True, evidence: str = "artifacts/E/comparison/comparison.json") -> Any:
    return parse_config(PLAN.format(allowed=str(allowed).lower(), evidence=evidence))


def compared(complete: bool = True) -> dict[str, Any]:
    counts = {
        "death_traces": 1,
        "recovered_chains": 2,
        "recovery_chains": 3,
        "trap_interactions": 1,
        "context_profile": True,
        "context_samples": 9,
        "context_growth_per_tick": 0.5,
    }
    return {
        "schema": "phasef.comparison/1",
        "status": "compared",
        "baseline": {"name": "base", "report": "b.json", "taskSetHash": "T" * 64, "gateConfigHash": "G" * 64},
        "finetuned": {"name": "tuned", "report": "f.json", "taskSetHash": "T" * 64, "gateConfigHash": "G" * 64},
        "pairs": {"count": 7},
        "evidence": {
            "complete": complete,
            "missing": [] if complete else ["no recovered chain in either run"],
            "baseline": counts,
            "finetuned": counts | {"context_profile": complete},
        },
        "deltas": [],
        "flips": {"solved": [], "unsolved": [], "died": [], "survived": []},
        "residual_blockers": [],
        "self_check": [],
        "noise": {"resamples": 100, "seed": 0, "confidence": 0.95},
    }


def test_comparison_criteria_name_what_they_were_judged_on() -> None:
    evidence, comparison = judge_comparison(compared(), "c.json", "ab" * 32)
    assert evidence["met"] and comparison["met"] and comparison["sha256"] == "ab" * 32
    assert comparison["evidence"] == "c.json (sha256 abababababab): base vs tuned compared, 7 episode pair(s)"
    assert "finetuned 1 death trace(s), 2 recovered chain(s), context profile present" in evidence["evidence"]

    evidence, comparison = judge_comparison(compared(complete=False), "c.json", None)
    assert not evidence["met"] and comparison["met"]
    assert evidence["evidence"].endswith("— missing: no recovered chain in either run")

    refused = {"schema": "phasef.comparison/1", "status": "refused", "refusal": ["taskSetHash differs"]}
    evidence, comparison = judge_comparison(refused, "c.json", None)
    assert not evidence["met"] and not comparison["met"]
    assert "not compared (taskSetHash differs)" in comparison["evidence"]

    evidence, comparison = judge_comparison(None, None, None)
    assert not evidence["met"] and not comparison["met"] and "no comparison report" in comparison["evidence"]


def test_audit_criterion_is_met_only_by_go() -> None:
    assert not judge_audit(None, "E.gate")["met"]
    assert "no audit is bound to the final gate E.gate" in judge_audit(None, "E.gate")["evidence"]
    auditors = [{"name": "g", "role": "primary", "verdict": "GO"}, {"name": "c", "role": "recursive", "verdict": None}]
    invalid = judge_audit({"verdict": "INVALID", "reasons": ["c gave no verdict"], "auditors": auditors}, "E.gate")
    assert not invalid["met"]
    assert "INVALID; auditors: g (primary) GO, c (recursive) no verdict — c gave no verdict" in invalid["evidence"]
    go = judge_audit({"verdict": "GO", "packet_sha256": "cd" * 32, "verdict_path": "v.json"}, "E.gate")
    assert go["met"] and go["evidence"].startswith("v.json: GO on packet cdcdcdcdcdcd") and go["source"] == "v.json"


def _gate(criteria: list[dict[str, Any]] | None, gate_id: str = "E.gate") -> GateState:
    return GateState(id=gate_id, stage="E", step=gate_id.split(".")[1], criteria=criteria)


def test_a_go_over_unmet_criteria_needs_leave_and_an_explicit_override() -> None:
    unmet = [*judge_comparison(compared(), "c.json", None), judge_audit({"verdict": "NO-GO"}, "E.gate")]
    met = [*judge_comparison(compared(), "c.json", None), judge_audit({"verdict": "GO"}, "E.gate")]
    allowed, strict = cfg(True), cfg(False)
    gate = _gate(unmet)
    assert "sign it as an override" in (final_go_refusal(allowed, gate, "go", False) or "")
    assert final_go_refusal(allowed, gate, "go", True) is None and is_override(allowed, gate, "go")
    refusal = final_go_refusal(strict, gate, "go", True) or ""
    assert "forbids overrides there" in refusal and "recursive audit verdict = GO — " in refusal
    assert "evidence completeness" not in refusal, "only the unmet criteria are named"
    assert final_go_refusal(strict, gate, "no-go", False) is None and not is_override(strict, gate, "no-go")
    assert final_go_refusal(strict, _gate(met), "go", False) is None and not is_override(strict, _gate(met), "go")
    # a gate opened without its criteria judged (an older journal) fails closed
    assert "without its pass criteria being judged" in (final_go_refusal(allowed, _gate(None), "go", False) or "")
    # other gates are not the final one: no criteria asked
    assert final_go_refusal(strict, _gate(None, "E.comparison"), "go", False) is None


def _decided_state(session_dir: Path, override: bool) -> SessionState:
    criteria = [*judge_comparison(compared(), "c.json", None), judge_audit({"verdict": "INVALID"}, "E.gate")]
    events = [
        Event(seq=1, ts="t1", type="session_started", payload={"final_gate": "E.gate", "plan": []}),
        Event(seq=2, ts="t2", type="gate_opened", stage="E", step="gate", payload={"criteria": criteria}),
        Event(
            seq=3,
            ts="t3",
            type="gate_decided",
            stage="E",
            step="gate",
            payload={"decision": "go", "operator": "ann", "reason": "ship", "override": override},
        ),
    ]
    return replay(events, session_dir.name)


def test_final_report_opens_the_comparison_unless_a_gate_is_bound_to_it(tmp_path: Path) -> None:
    session = tmp_path / "s"
    (session / "report").mkdir(parents=True)
    report = session / "report" / "comparison.json"
    report.write_text(json.dumps(compared()))
    state = _decided_state(session, override=True)
    assert state.public()["pass_criteria"][2]["met"] is False

    written = write_final_report(cfg(), session, tmp_path, state, "GO-OVERRIDE")
    assert written == ["report/comparison.json", "report/comparison.md"]
    doc = json.loads(report.read_text())
    assert list(doc)[:4] == ["schema", "pass_criteria", "final_decision", "overrides"]
    assert doc["final_decision"]["decision"] == "GO-OVERRIDE" and doc["final_decision"]["unmet"] == ["audit"]
    assert doc["overrides"][0]["gate"] == "E.gate" and doc["overrides"][0]["final"] is True
    assert doc["deltas"] == [] and doc["status"] == "compared", "the comparison itself is kept"

    # a gate bound to report/comparison.json: rewriting it would change signed evidence, so it stays as it is
    report.write_text(json.dumps(compared()))
    before = report.read_bytes()
    written = write_final_report(cfg(evidence="report/comparison.json"), session, tmp_path, state, "GO-OVERRIDE")
    assert written == ["report/final-decision.json", "report/final-decision.md"]
    assert report.read_bytes() == before
    md = (session / "report" / "final-decision.md").read_text()
    assert md.startswith("# Final decision\n\n## Pass criteria\n")
    assert "**Final decision: GO-OVERRIDE** — operator override" in md


def test_a_comparison_that_cannot_be_rendered_is_left_as_it_was_and_the_reason_returned(tmp_path: Path) -> None:
    session = tmp_path / "s"
    (session / "report").mkdir(parents=True)
    report = session / "report" / "comparison.json"
    broken = {"schema": "phasef.comparison/1", "status": "compared", "baseline": {}, "finetuned": {}}
    report.write_text(json.dumps(broken))
    written = write_final_report(cfg(), session, tmp_path, _decided_state(session, override=True), "GO-OVERRIDE")
    assert len(written) == 1 and written[0].startswith("not written: KeyError")
    assert json.loads(report.read_text()) == broken and not (session / "report" / "comparison.md").exists()
