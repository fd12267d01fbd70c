"""Stage A with an external runner that writes its trace in another agent's format (``trace_format`` on the
validation step): the trace is imported into the step's artifacts, then validated like a canonical one."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pipeline.bench.validate import validate_step
from pipeline.jobs.context import StepContext, StepFailed
from pipeline.report.eval_report import Gate, build_report, write_report
from pipeline.traces.importers import import_trace

GATE = Gate(5, 1000, 10.0, 2, True)
FOREIGN = Path(__file__).parent / "fixtures" / "foreign"
CODEX = next((FOREIGN / "codex").rglob("rollout-*.jsonl"))


def _ctx(tmp_path: Path, params: dict[str, object]) -> StepContext:
    art = tmp_path / "art"
    art.mkdir(exist_ok=True)
    return StepContext(
        session_id="s",
        session_dir=tmp_path,
        project_dir=tmp_path,
        stage="A",
        step="validate",
        kind="builtin",
        attempt=1,
        artifacts_dir=art,
        params=params,
    )


def _runner_output(tmp_path: Path) -> tuple[Path, Path]:
    """What a runner that logs Codex rollouts leaves: its rollout, and a report of the numbers that rollout shows,
    naming the rollout's own sha256."""
    runner = tmp_path / "runner"
    runner.mkdir()
    rollout = runner / CODEX.name
    shutil.copy(CODEX, rollout)
    canonical = tmp_path / "canonical.jsonl"
    canonical.write_text("".join(json.dumps(r) + "\n" for r in import_trace(rollout)[0]))
    report = runner / "eval_report.json"
    write_report(build_report(canonical, run_id="ext", gate=GATE, task_set_hash="h"), report)
    data = json.loads(report.read_text())
    data["trace"]["sha256"] = hashlib.sha256(rollout.read_bytes()).hexdigest()
    report.write_text(json.dumps(data, indent=2))
    return report, rollout


@pytest.mark.parametrize("fmt", ["codex", "auto"])
def test_a_codex_rollout_is_imported_then_validated(tmp_path: Path, fmt: str) -> None:
    report, rollout = _runner_output(tmp_path)
    params = {"report": str(report), "trace": str(rollout), "check_trace_hash": True, "trace_format": fmt}
    summary = validate_step(_ctx(tmp_path, params))
    imported = tmp_path / "art" / "imported_trace.jsonl"
    assert summary["trace"] == str(imported) and summary["runnerTrace"] == str(rollout)
    assert summary["traceRecords"] == len(imported.read_text().splitlines()) == 14
    assert summary["ticksObserved"] == 12


def test_a_report_that_does_not_match_the_imported_trace_fails(tmp_path: Path) -> None:
    report, rollout = _runner_output(tmp_path)
    data = json.loads(report.read_text())
    data["ticksObserved"] = 99
    data["trace"]["sha256"] = "0" * 64
    report.write_text(json.dumps(data, indent=2))
    params = {"report": str(report), "trace": str(rollout), "check_trace_hash": True, "trace_format": "codex"}
    with pytest.raises(StepFailed, match="ticksObserved: report says 99, the trace shows 12"):
        validate_step(_ctx(tmp_path, params))


def test_a_trace_of_the_wrong_format_fails_with_a_clear_message(tmp_path: Path) -> None:
    report, _ = _runner_output(tmp_path)
    params = {"report": str(report), "trace": str(report), "trace_format": "codex"}
    expected = rf"as codex: no tick in it; first problem: {report}:1: invalid JSON at column 2"
    with pytest.raises(StepFailed, match=expected):
        validate_step(_ctx(tmp_path, params))
    missing = {"report": str(report), "trace": str(tmp_path / "nowhere.jsonl"), "trace_format": "auto"}
    with pytest.raises(StepFailed, match=r"cannot import the runner's trace .*nowhere\.jsonl"):
        validate_step(_ctx(tmp_path, missing))


def test_a_voyager_checkpoint_folder_as_the_runner_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.traces.importers import voyager

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(FOREIGN / "voyager" / "ckpt", checkpoint)
    canonical = tmp_path / "canonical.jsonl"
    canonical.write_text("".join(json.dumps(r) + "\n" for r in voyager.convert_checkpoint(checkpoint)[0]))
    report = tmp_path / "eval_report.json"
    write_report(build_report(canonical, run_id="ext", gate=GATE, task_set_hash="h"), report)
    params = {"report": str(report), "trace": str(checkpoint), "check_trace_hash": True, "trace_format": "auto"}
    summary = validate_step(_ctx(tmp_path, params))
    assert summary["ticksObserved"] == 12 and summary["runnerTrace"] == str(checkpoint)  # one per events file
    assert "trace.sha256 not checked: the runner's trace" in capsys.readouterr().out
