"""The model matrix: every evaluated run of a session in one table, non-comparable and unreadable runs flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.jobs.context import StepContext, StepFailed
from pipeline.report.compare import METRICS
from pipeline.report.eval_report import compute_metrics
from pipeline.report.matrix import matrix_step
from tests.step_helpers import step_context
from tests.test_compare_report import baseline_specs, finetuned_specs, write_eval

ROOT = Path(__file__).resolve().parents[1]


def ctx(session: Path, params: dict[str, object]) -> StepContext:
    return step_context(session, "E", "matrix", params)


def test_discovers_every_run_and_flags_the_odd_ones(tmp_path: Path) -> None:
    art = tmp_path / "artifacts"
    base_ticks = write_eval(art / "A" / "baseline", baseline_specs(8), seed=1)
    write_eval(art / "E" / "finetuned", finetuned_specs(8), seed=2)
    write_eval(art / "E" / "other-tasks", finetuned_specs(8), seed=3, task_hash="U" * 64)
    broken = art / "E" / "broken"
    broken.mkdir(parents=True)
    (broken / "eval_report.json").write_text("{oops")

    summary = matrix_step(ctx(tmp_path, {}))
    assert summary["runs"] == 4 and summary["reference"] == "baseline"
    assert summary["unreadable"] == ["broken"] and summary["not_comparable"] == ["other-tasks"]

    doc = json.loads((tmp_path / "report" / "model_matrix.json").read_text())
    names = [c["name"] for c in doc["columns"]]
    assert names == ["baseline", "broken", "finetuned", "other-tasks"]
    assert [r["metric"] for r in doc["rows"]] == [m.key for m in METRICS]
    rows = {r["metric"]: r["values"] for r in doc["rows"]}
    assert rows["ticks_observed"][0] == len(base_ticks) and rows["ticks_observed"][1] is None
    direct = compute_metrics(art / "E" / "finetuned" / "dirty_trace.jsonl")
    assert rows["latency_p95_s"][2] == direct.latency.p95
    assert rows["schema_violation_rate"][2] == 0 and rows["reflex_quality"][2] == 1.0
    md = (tmp_path / "artifacts" / "E" / "matrix" / "model_matrix.md").read_text()
    assert "| latency p50 | s | lower |" in md and "| comparable | | | yes | error | yes | **no** |" in md
    assert "other-tasks: task set differs from the reference run" in md and "broken: " in md


def test_explicit_runs_keep_their_order_and_names(tmp_path: Path) -> None:
    write_eval(tmp_path / "b", baseline_specs(4), seed=1)
    write_eval(tmp_path / "f", finetuned_specs(4), seed=2)
    params = {
        "runs": [
            {"report": str(tmp_path / "f" / "eval_report.json"), "name": "tuned"},
            {"report": str(tmp_path / "b" / "eval_report.json"), "name": "base"},
        ]
    }
    summary = matrix_step(ctx(tmp_path / "s", params))
    assert summary["reference"] == "tuned" and summary["not_comparable"] == []
    doc = json.loads((tmp_path / "s" / "report" / "model_matrix.json").read_text())
    assert [c["name"] for c in doc["columns"]] == ["tuned", "base"]


def test_nothing_to_show_fails(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="no evaluated runs"):
        matrix_step(ctx(tmp_path, {}))


def test_two_runs_of_the_same_model_get_told_apart(tmp_path: Path) -> None:
    write_eval(tmp_path / "artifacts" / "A" / "eval", baseline_specs(4), seed=1)
    write_eval(tmp_path / "artifacts" / "E" / "eval", finetuned_specs(4), seed=2)
    for stage in ("A", "E"):
        report = tmp_path / "artifacts" / stage / "eval" / "eval_report.json"
        data = json.loads(report.read_text())
        data["model"] = {"id": "tiny-qwen3"}
        report.write_text(json.dumps(data))
    summary = matrix_step(ctx(tmp_path, {}))
    doc = json.loads((tmp_path / "report" / "model_matrix.json").read_text())
    assert [c["name"] for c in doc["columns"]] == ["tiny-qwen3 [A/eval]", "tiny-qwen3 [E/eval]"]
    assert summary["reference"] == "tiny-qwen3 [A/eval]"
