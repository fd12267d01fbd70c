"""Stage A with an external runner that writes its trace in another agent's format (``trace_format`` on the
validation step): the trace is imported into the step's artifacts, then validated like a canonical one."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pipeline.bench.validate import phasef_report, validate_step
from pipeline.jobs.context import StepContext, StepFailed
from pipeline.report.eval_report import Gate, write_report
from pipeline.traces.importers import import_trace
from tests.step_helpers import step_context

GATE = Gate(5, 1000, 10.0, 2, True)
# the same gate as the step's params (phasef judges by the step's gate, and the runner's report must agree)
GATE_PARAMS = {
    "min_ticks": 5,
    "context_budget_chars": 1000,
    "max_context_growth_per_tick": 10.0,
    "context_warmup_ticks": 2,
    "require_evidence": True,
}
FOREIGN = Path(__file__).parent / "fixtures" / "foreign"
CODEX = next((FOREIGN / "codex" / "sessions").rglob("rollout-*.jsonl"))  # the hand-written rollout


def _ctx(tmp_path: Path, params: dict[str, object]) -> StepContext:
    return step_context(tmp_path, "A", "validate", params, project=tmp_path, artifacts=tmp_path / "art", create=True)


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
    write_report(phasef_report(canonical, GATE, {"runId": "ext", "taskSetHash": "h"}), report)
    data = json.loads(report.read_text())
    data["trace"]["sha256"] = hashlib.sha256(rollout.read_bytes()).hexdigest()
    report.write_text(json.dumps(data, indent=2))
    return report, rollout


@pytest.mark.parametrize("fmt", ["codex", "auto"])
def test_a_codex_rollout_is_imported_then_validated(tmp_path: Path, fmt: str) -> None:
    report, rollout = _runner_output(tmp_path)
    params = {
        "report": str(report),
        "trace": str(rollout),
        "check_trace_hash": True,
        "trace_format": fmt,
        "gate": GATE_PARAMS,
    }
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
    params = {
        "report": str(report),
        "trace": str(rollout),
        "check_trace_hash": True,
        "trace_format": "codex",
        "gate": GATE_PARAMS,
    }
    with pytest.raises(StepFailed, match="ticksObserved: report says 99, phasef computes 12 from the trace"):
        validate_step(_ctx(tmp_path, params))
    problems = (tmp_path / "art" / "problems.txt").read_text()
    assert f"trace.sha256: report says {'0' * 64}, {rollout} hashes to" in problems  # the runner's own file


def test_a_trace_of_the_wrong_format_fails_with_a_clear_message(tmp_path: Path) -> None:
    report, _ = _runner_output(tmp_path)
    params = {"report": str(report), "trace": str(report), "trace_format": "codex"}
    with pytest.raises(StepFailed, match=rf"first: {report}:1: invalid JSON at column 2"):
        validate_step(_ctx(tmp_path, params))
    problems = (tmp_path / "art" / "problems.txt").read_text()
    assert f"{report}: no tick could be imported (codex)" in problems
    assert not (tmp_path / "art" / "eval_report.json").exists()  # no report of a trace that is not there
    missing = {"report": str(report), "trace": str(tmp_path / "nowhere.jsonl"), "trace_format": "auto"}
    with pytest.raises(StepFailed, match=r"nowhere\.jsonl: cannot import: "):
        validate_step(_ctx(tmp_path, missing))


def test_a_voyager_checkpoint_folder_as_the_runner_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.traces.importers import voyager

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(FOREIGN / "voyager" / "ckpt", checkpoint)
    canonical = tmp_path / "canonical.jsonl"
    canonical.write_text("".join(json.dumps(r) + "\n" for r in voyager.convert_checkpoint(checkpoint)[0]))
    report = tmp_path / "eval_report.json"
    write_report(phasef_report(canonical, GATE, {"runId": "ext", "taskSetHash": "h"}), report)
    params = {
        "report": str(report),
        "trace": str(checkpoint),
        "check_trace_hash": True,
        "trace_format": "auto",
        "gate": GATE_PARAMS,
    }
    summary = validate_step(_ctx(tmp_path, params))
    assert summary["ticksObserved"] == 12 and summary["runnerTrace"] == str(checkpoint)  # one per events file
    assert "trace.sha256 not checked: the runner's trace" in capsys.readouterr().out


def test_phasef_validate_takes_a_run_folder_with_from_auto(tmp_path: Path) -> None:
    import subprocess
    import sys

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(FOREIGN / "voyager" / "ckpt", checkpoint)
    done = subprocess.run(
        [sys.executable, "-m", "phasef_tui.cli", "validate", "--trace", str(checkpoint), "--from", "auto", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    data = json.loads(done.stdout)
    assert f"imported {checkpoint} (1 file(s): voyager)" in done.stderr
    assert "trace.sha256 not checked" not in done.stderr  # no report given, so no hash to check
    assert data["verdict"] == "FAIL" and any(r.startswith("min_ticks: ticksObserved 12") for r in data["reasons"])
    # the import's structure is judged in the protocol checks, not as problems; exit 0 without problems
    assert done.returncode == 0 and data["problems"] == [], data["problems"]
