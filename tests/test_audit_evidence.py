"""Gathering the evidence: raw records of deaths and chains out of the trace, saved analyses, green-only checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.audit.evidence import STRING_CHARS, collect_evidence, layout, trim
from pipeline.audit.params import AuditParams
from pipeline.traces.analysis import analyze
from tests.test_audit_support import write_trace


def params(**extra: Any) -> AuditParams:
    return AuditParams.model_validate(
        {"stage": "baseline", "auditors": ["a", "b"], "report": "report.json", "trace": "trace.jsonl", **extra}
    )


def setup(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text('{"pass": true}')
    write_trace(tmp_path / "trace.jsonl")


def resolver(tmp_path: Path) -> Any:
    return lambda raw: tmp_path / raw


def test_parts_carry_the_raw_records_with_their_trace_lines(tmp_path: Path) -> None:
    setup(tmp_path)
    evidence = collect_evidence(params(), resolver(tmp_path), tmp_path / "packet")
    assert evidence.missing == []
    names = [p.name for p in evidence.parts]
    assert names == ["report", "trace", "death_traces", "recovery_chains", "context_profile", "trace_findings"]
    trace_lines = (tmp_path / "trace.jsonl").read_text().splitlines()
    deaths = json.loads((tmp_path / "packet" / "death_traces.json").read_text())
    death = deaths["deaths"][0]
    assert death["episode"] == "ep-2" and death["reason"] == "fatal action"
    assert death["episode_records"]["episode_end"]["outcome"] == "death"
    last = death["ticks"][-1]
    assert last["outcome"] == "death" and last["tick"] == 8
    assert json.loads(trace_lines[last["line"] - 1])["tick"] == 8  # the line number points into the raw trace
    chains = json.loads((tmp_path / "packet" / "recovery_chains.json").read_text())
    assert chains["by_outcome"] == {"recovered": 1, "death": 1}
    assert [c["outcome"] for c in chains["chains"]] == ["recovered", "death"]
    assert [t["chain_role"] for t in chains["chains"][0]["ticks_shown"]] == ["failure", "attempt", "recovered"]
    profile = json.loads((tmp_path / "packet" / "context_profile.json").read_text())
    assert profile["bounded"] is True and profile["samples"] == 19
    findings = json.loads((tmp_path / "packet" / "trace_findings.json").read_text())
    assert findings["traps"] == {"fatal": 3}
    assert evidence.stats["deaths"] == 1 and evidence.stats["chains"] == 2


def test_bounds_on_what_is_shown(tmp_path: Path) -> None:
    setup(tmp_path)
    evidence = collect_evidence(params(max_chains=1), resolver(tmp_path), tmp_path / "packet")
    chains = json.loads((tmp_path / "packet" / "recovery_chains.json").read_text())
    assert chains["chains_total"] == 2 and chains["shown"] == 1
    assert evidence.missing == []


def test_saved_analysis_must_be_of_this_trace(tmp_path: Path) -> None:
    setup(tmp_path)
    (tmp_path / "analysis.json").write_text(analyze(tmp_path / "trace.jsonl").model_dump_json())
    evidence = collect_evidence(params(analysis="analysis.json"), resolver(tmp_path), tmp_path / "packet")
    assert evidence.missing == []
    assert "analysis" in [p.name for p in evidence.parts]

    write_trace(tmp_path / "trace.jsonl", context=False)  # the trace moved on; the saved analysis did not
    evidence = collect_evidence(params(analysis="analysis.json"), resolver(tmp_path), tmp_path / "packet")
    assert any("analysis is of another trace" in m for m in evidence.missing)

    (tmp_path / "analysis.json").write_text('{"records": 3}')
    evidence = collect_evidence(params(analysis="analysis.json"), resolver(tmp_path), tmp_path / "packet")
    assert any("is not a trace analysis" in m for m in evidence.missing)


def test_unreadable_or_empty_evidence_is_missing(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("")
    (tmp_path / "trace.jsonl").write_text("not json\n{broken\n")
    evidence = collect_evidence(params(notes="notes.md"), resolver(tmp_path), tmp_path / "packet")
    assert any("eval report is empty" in m for m in evidence.missing)
    assert any("has no readable records" in m for m in evidence.missing)
    assert any("architect's notes not found" in m for m in evidence.missing)
    assert [p.name for p in evidence.parts] == ["trace"]  # what there is, is still hashed into the packet


def test_trim_cuts_long_strings_and_summarises_chat_context() -> None:
    record = {
        "raw_output": "x" * (STRING_CHARS + 50),
        "context": [{"role": "user", "content": "abc"}, {"role": "assistant", "content": "de"}],
        "action": {"args": {"command": "y" * (STRING_CHARS + 1)}},
        "latency_s": 0.5,
    }
    out = trim(record)
    assert out["raw_output"].endswith("…[+50 chars]")
    assert out["context"] == "<2 messages, 5 chars; full text in the trace>"
    assert out["action"]["args"]["command"].endswith("…[+1 chars]")
    assert out["latency_s"] == 0.5


def test_layout_is_json_with_one_record_a_line() -> None:
    data = {"deaths": [{"ticks": [{"a": {"b": [1, 2]}}, {"a": 2}], "last": [1, 2]}], "n": 1}
    text = layout(data)
    assert json.loads(text) == data
    assert '    {"a": {"b": [1, 2]}},' in text.splitlines()
