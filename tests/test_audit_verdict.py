"""Parsing auditors' answers into verdicts, and the verdict.json contract the gate reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.audit.verdict import (
    AuditorResult,
    AuditOutcome,
    ParsedVerdict,
    ParseFailure,
    find_json_block,
    load_outcome,
    parse_verdict,
    write_outcome,
)

PARTS = ["report", "death_traces", "recovery_chains", "context_profile"]
SHA = "ab" * 32


def answer(block: dict[str, object], fenced: bool = True) -> str:
    body = json.dumps(block)
    return f"I read the packet.\n```json\n{body}\n```\n" if fenced else f"Verdict follows {body} end."


def test_fenced_go_with_evidence_is_go() -> None:
    got = parse_verdict(
        answer({"verdict": "GO", "findings": ["deaths read"], "evidence_refs": ["death_traces:ep-1"]}), PARTS, SHA
    )
    assert isinstance(got, ParsedVerdict)
    assert got.verdict == "GO"
    assert got.evidence_refs == ["death_traces:ep-1"]


def test_last_bare_object_is_used_and_spelling_is_normalised() -> None:
    text = 'Example: {"verdict": "GO"} but really: ' + json.dumps(
        {"verdict": "no_go", "blockers": ["context grows"], "evidence_refs": ["context_profile"]}
    )
    got = parse_verdict(text, PARTS, SHA)
    assert isinstance(got, ParsedVerdict)
    assert got.verdict == "NO-GO"
    assert got.blockers == ["context grows"]


def test_last_fenced_block_wins_over_earlier_ones() -> None:
    text = answer({"verdict": "GO", "evidence_refs": ["report"]}) + answer({"verdict": "NO-GO", "blockers": ["x"]})
    got = parse_verdict(text, PARTS, SHA)
    assert isinstance(got, ParsedVerdict) and got.verdict == "NO-GO"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("garbage tokens ::: no json at all", "no JSON object"),
        (answer({"verdict": "MAYBE", "evidence_refs": ["report"]}), "GO or NO-GO"),
        (answer({"verdict": "GO", "findings": "all good", "evidence_refs": ["report"]}), "findings"),
        (answer({"findings": []}), "verdict"),
        (answer({"verdict": "GO", "findings": ["fine"]}), "must cite evidence"),
        (answer({"verdict": "GO", "blockers": ["b"], "evidence_refs": ["report"]}), "contradicts"),
        (answer({"verdict": "GO", "evidence_refs": ["imagined_part"]}), "not in the packet"),
        (answer({"verdict": "GO", "evidence_refs": ["report"], "packet_sha256": "cd" * 32}), "names packet"),
        (answer({"verdict": "GO", "evidence_refs": ["report"], "packet_sha256": "ab"}), "names packet"),
    ],
)
def test_off_schema_answers_are_failures_with_a_reason(text: str, reason: str) -> None:
    got = parse_verdict(text, PARTS, SHA)
    assert isinstance(got, ParseFailure)
    assert reason in got.reason


def test_matching_packet_hash_prefix_is_accepted() -> None:
    got = parse_verdict(answer({"verdict": "GO", "evidence_refs": ["report"], "packet_sha256": SHA[:16]}), PARTS, SHA)
    assert isinstance(got, ParsedVerdict)


def test_find_json_block_skips_broken_fences_and_nested_objects() -> None:
    text = '```json\n{"verdict": "GO",\n```\nthen {"verdict": "NO-GO", "findings": [{"a": 1}]}'
    assert find_json_block(text) == {"verdict": "NO-GO", "findings": [{"a": 1}]}
    assert find_json_block("{ not json") is None


def outcome(tmp_path: Path) -> AuditOutcome:
    return AuditOutcome(
        verdict="NO-GO",
        reasons=["primary auditor 'a' (round 1): NO-GO (deaths unexplained)"],
        packet_sha256=SHA,
        packet_path="artifacts/B/audit/packet/packet.json",
        parts={"report": "11" * 32},
        auditors=[
            AuditorResult(
                name="a",
                role="primary",
                verdict="NO-GO",
                blockers=["deaths unexplained"],
                raw_output_path="artifacts/B/audit/auditors/round1-primary-a.txt",
                latency_s=1.5,
            )
        ],
        green_only=False,
        stage="baseline",
    )


def test_outcome_file_has_the_exact_contract_keys_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "verdict.json"
    write_outcome(outcome(tmp_path), path)
    data = json.loads(path.read_text())
    assert data["schema"] == "phasef.audit_outcome/1"
    assert set(data) == {
        "schema",
        "verdict",
        "reasons",
        "packet_sha256",
        "packet_path",
        "parts",
        "auditors",
        "green_only",
        "stage",
    }
    assert set(data["auditors"][0]) == {
        "name",
        "role",
        "verdict",
        "findings",
        "blockers",
        "evidence_refs",
        "raw_output_path",
        "latency_s",
        "error",
    }
    assert load_outcome(path) == outcome(tmp_path)


def test_load_outcome_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "verdict.json"
    data = json.loads(outcome(tmp_path).to_json())
    data["verdict"] = "PROBABLY"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"verdict\.json.*verdict"):
        load_outcome(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_outcome(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_outcome(tmp_path / "absent.json")
