"""Validating an (external) eval report and its trace: every problem as file:line: field, all input checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.bench.validate import validate_files, validate_step
from pipeline.config import load_config
from pipeline.jobs.context import StepContext, StepFailed
from pipeline.report.eval_report import Gate, build_report, write_report
from tests.step_helpers import step_context

try:  # tests/ may or may not be a package, depending on how pytest is started
    from tests.test_bench_report import sample_records, write
except ModuleNotFoundError:
    from tests.test_bench_report import sample_records, write  # type: ignore[no-redef]

GATE = Gate(5, 1000, 10.0, 2, True)
GATE_TABLE = {
    "min_ticks": 5,
    "context_budget_chars": 1000,
    "max_context_growth_per_tick": 10.0,
    "context_warmup_ticks": 2,
    "require_evidence": True,
}
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "external-stage-a.toml"


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    trace = write(tmp_path / "dirty_trace_latest.jsonl", sample_records())
    report = tmp_path / "voyager_realworld_eval_latest.json"
    write_report(build_report(trace, run_id="ext", gate=GATE, task_set_hash="h"), report)
    return report, trace


def _ctx(tmp_path: Path, params: dict[str, object]) -> StepContext:
    return step_context(tmp_path, "A", "validate", params, project=tmp_path, artifacts=tmp_path / "art", create=True)


def test_a_consistent_pair_is_valid(pair: tuple[Path, Path]) -> None:
    report, trace = pair
    result = validate_files(report, trace, gate=GATE, check_hash=True)
    assert result.ok, result.errors
    assert result.trace_records == 11 and result.report is not None


def test_report_errors_name_line_and_field(pair: tuple[Path, Path]) -> None:
    report, trace = pair
    data = json.loads(report.read_text())
    del data["taskSetHash"]
    data["latency"]["p50"] = "fast"
    data["verdict"] = "MAYBE"
    report.write_text(json.dumps(data, indent=2))
    lines = report.read_text().splitlines()
    errors = validate_files(report, trace, gate=GATE).errors
    p50_line = next(i for i, line in enumerate(lines, 1) if '"p50"' in line)
    assert any(e.startswith(f"{report}:{p50_line}: latency.p50:") for e in errors), errors
    assert any("taskSetHash: required key is missing" in e for e in errors)
    assert any(": verdict:" in e for e in errors)


def test_trace_errors_are_all_listed_and_numbers_must_match(pair: tuple[Path, Path]) -> None:
    report, trace = pair
    lines = trace.read_text().splitlines()
    lines[1] = lines[1].replace('"outcome": "error"', '"outcome": "exploded"')
    lines[4] = "{not json"
    lines.append(json.dumps({"kind": "teleport", "episode": "e9", "ts": 1}))
    trace.write_text("\n".join(lines) + "\n")
    errors = validate_files(report, trace, gate=GATE, check_hash=True).errors
    assert any(e.startswith(f"{trace}:2: outcome:") for e in errors), errors
    assert f"{trace}:5: not a JSON object" in errors
    assert any(e.startswith(f"{trace}:12: kind: expected one of") for e in errors), errors
    assert any("ticksObserved: report says 7, phasef computes 6 from the trace" in e for e in errors), errors
    assert any(": trace.sha256: report says" in e for e in errors)


def test_validate_step_fails_with_the_problems_and_passes_a_good_pair(pair: tuple[Path, Path], tmp_path: Path) -> None:
    report, trace = pair
    summary = validate_step(_ctx(tmp_path, {"report": report.name, "trace": trace.name, "gate": GATE_TABLE}))
    assert summary["valid"] and summary["verdict"] == "PASS" and summary["ticksObserved"] == 7
    assert summary["report"] == str(tmp_path / "art" / "eval_report.json")
    with pytest.raises(StepFailed, match="verdict is FAIL"):
        failing = tmp_path / "fail.json"
        write_report(build_report(trace, run_id="x", gate=Gate(100, 1000, 10.0, 2, True), task_set_hash="h"), failing)
        validate_step(
            _ctx(
                tmp_path,
                {
                    "report": str(failing),
                    "trace": str(trace),
                    "require_pass": True,
                    "gate": GATE_TABLE | {"min_ticks": 100},
                },
            )
        )
    with pytest.raises(StepFailed, match=r"missing\.json"):
        validate_step(_ctx(tmp_path, {"report": "missing.json", "trace": trace.name}))
    with pytest.raises(StepFailed, match=r"params\.bogus"):
        validate_step(_ctx(tmp_path, {"report": "a", "trace": "b", "bogus": 1}))


def test_external_stage_a_example_is_a_valid_plan() -> None:
    cfg = load_config(EXAMPLE)
    bench = cfg.step("A.bench")
    assert bench.kind == "shell" and bench.command == "npm run bench:voyager-realworld-eval"
    assert len(bench.outputs) == 2
    validate = cfg.step("A.validate")
    assert validate.function == "pipeline.bench.validate:validate_step"
    assert set(validate.params) >= {"report", "trace"}
    assert cfg.dependencies()["A.validate"] == ["A.bench"]


def test_floats_agree_within_the_stated_tolerance_and_maps_compare_key_by_key(pair: tuple[Path, Path]) -> None:
    report, trace = pair
    data = json.loads(report.read_text())
    data["latency"]["p50"] += 4e-7  # an unrounded figure: within ±1e-06
    data["contextProfile"]["meanChars"] += 0.004  # within ±0.01 (phasef keeps 2 decimals)
    data["contextProfile"]["perTickMean"][0] += 0.04  # within ±0.1
    report.write_text(json.dumps(data, indent=2))
    assert validate_files(report, trace, gate=GATE).ok
    data["latency"]["p50"] += 2e-6
    data["errorClasses"].pop("Fatal")
    data["actors"]["robot"] = 1
    report.write_text(json.dumps(data, indent=2))
    errors = validate_files(report, trace, gate=GATE).errors
    assert len(errors) == 3, errors
    assert any("latency.p50: report says 0.2500024" in e and "(tolerance ±1e-06)" in e for e in errors)
    assert any("errorClasses.Fatal: report has no entry, phasef computes 1 from the trace" in e for e in errors)
    assert any("actors.robot: report says 1, phasef finds no entry in the trace" in e for e in errors)
