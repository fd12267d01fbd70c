"""The user's own benchmark runner, in another language: phasef computes the report and checks every claim.

The runner is a Node script (tests/fixtures/node_runner/runner.mjs) written from docs/trace-format.md and the
published schemas. It runs for real (node) through the external Stage A wiring of examples/external-stage-a.toml,
and each lie it can tell is refused with the field named.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.bench.params import GateConfig
from pipeline.bench.validate import check_run, resolve_gate
from pipeline.config import parse_config
from pipeline.engine import Engine
from pipeline.jobs.context import StepFailed, resolve_path
from pipeline.report.eval_report import report_json

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "fixtures" / "node_runner" / "runner.mjs"
EXAMPLE = ROOT / "examples" / "external-stage-a.toml"
NODE = shutil.which("node")
OUT = "benchmarks/audits/longrun"
REPORT = "voyager_realworld_eval_latest.json"
TRACE = "dirty_trace_latest.jsonl"
GATE = resolve_gate(GateConfig(min_ticks=100, context_budget_chars=3020, max_context_growth_per_tick=16.0))

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def run_node(out: Path, *args: str) -> None:
    assert NODE is not None
    done = subprocess.run([NODE, str(RUNNER), "--out", str(out), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def stage_a_plan(runner_args: str = "") -> str:
    """The example plan with the runner's command in place of npm and without the operator's gate."""
    text = EXAMPLE.read_text()
    npm = 'command = "npm run bench:voyager-realworld-eval"'
    text = text.replace(npm, f'command = "node {RUNNER} --out {OUT} {runner_args}"')
    head, _, _ = text.partition("[stages.A.steps.review]")
    return head


def run_stage_a(tmp_path: Path, runner_args: str = "") -> tuple[int, Path]:
    cfg = parse_config(stage_a_plan(runner_args), str(EXAMPLE))
    session = tmp_path / "session"
    engine = Engine(cfg, session_dir=session, project_dir=tmp_path)
    try:
        result = asyncio.run(engine.run())
    finally:
        engine.journal.close()
    return result.exit_code, session


def test_the_node_runner_passes_through_the_external_stage_a_wiring(tmp_path: Path) -> None:
    code, session = run_stage_a(tmp_path)
    assert code == 0
    art = session / "artifacts" / "A" / "validate"
    summary = json.loads((art / "summary.json").read_text())
    assert summary["valid"] is True and summary["verdict"] == "PASS"
    assert summary["report"] == str(art / "eval_report.json")
    assert (art / "problems.txt").read_text() == ""
    # the example's gate shows the operator phasef's report, not the runner's
    evidence = parse_config(EXAMPLE.read_text(), str(EXAMPLE)).step("A.review").evidence
    assert resolve_path(evidence[0], session, tmp_path) == art / "eval_report.json"
    mine = json.loads((art / "eval_report.json").read_text())
    claims = json.loads((tmp_path / OUT / REPORT).read_text())
    # phasef's own numbers, which agree with every figure the runner computed from the docs
    assert mine["ticksObserved"] == claims["ticksObserved"] == 107
    assert mine["mttr"]["seconds"] == pytest.approx(0.146) and claims["mttr"]["seconds"] == pytest.approx(0.146)
    assert mine["trapInteractions"]["total"] == 3 and mine["thrashTicks"] == 0
    assert mine["contextProfile"]["growthPerTick"] == pytest.approx(claims["contextProfile"]["growthPerTick"])
    assert mine["gateConfigHash"] == claims["gateConfigHash"]  # the runner hashed the gate as documented
    assert mine["trace"]["sha256"] == claims["trace"]["sha256"]


def test_a_lie_fails_the_stage_with_the_field_and_the_full_list(tmp_path: Path) -> None:
    code, session = run_stage_a(tmp_path, "--lie mttr")
    assert code != 0
    art = session / "artifacts" / "A" / "validate"
    problems = (art / "problems.txt").read_text().splitlines()
    assert problems == [
        f"{tmp_path / OUT / REPORT}:{_line(tmp_path / OUT / REPORT, 'seconds')}: mttr.seconds: report says 2.5, "
        "phasef computes 0.146 from the trace (tolerance ±1e-06)"
    ]
    journal = [json.loads(line) for line in (session / "journal.jsonl").read_text().splitlines()]
    failed = [e for e in journal if e["type"] == "step_failed" and e.get("step") == "validate"]
    assert failed and f"full list: {art / 'problems.txt'}" in failed[-1]["payload"]["error"]
    assert "mttr.seconds" in failed[-1]["payload"]["error"]
    assert not (session / "artifacts" / "A" / "review").exists()


def _line(path: Path, key: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if f'"{key}"' in line)


LIES = {
    "mttr": ("mttr.seconds", "report says 2.5, phasef computes 0.146 from the trace (tolerance ±1e-06)"),
    "thrash": ("thrashTicks", "report says 3, phasef computes 0 from the trace"),
    "traps": ("trapInteractions.total", "report says 0, phasef computes 3 from the trace"),
    "growth": (
        "contextProfile.growthPerTick",
        "report says 0, phasef computes 50.0 from the trace (tolerance ±0.0001)",
    ),
    "latency": ("latency.p95", "phasef computes 0.23 from the trace (tolerance ±1e-06)"),
    "failedcheck": ("verdict", "report says PASS although its own protocol check(s) failed: chains_well_formed"),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_each_lie_is_refused_with_the_field_named(tmp_path: Path, lie: str) -> None:
    run_node(tmp_path, "--lie", lie)
    result = check_run(tmp_path / TRACE, gate=GATE, report=tmp_path / REPORT)
    field, message = LIES[lie]
    found = [p for p in result.problems if p.field == field]
    assert found, [str(p) for p in result.problems]
    assert message in found[0].message
    assert found[0].file == str(tmp_path / REPORT) and found[0].line is not None
    assert result.report is not None  # phasef's own report exists whatever the runner claimed
    if lie in ("growth", "failedcheck"):
        assert result.report.verdict == "FAIL"
        verdicts = [p.message for p in result.problems if p.field == "verdict"]
        assert any("phasef's verdict under the same gate" in m for m in verdicts)


def test_a_pass_under_100_ticks_is_refused(tmp_path: Path) -> None:
    run_node(tmp_path, "--episodes", "2", "--ticks", "20")
    claims = json.loads((tmp_path / REPORT).read_text())
    assert claims["verdict"] == "PASS" and claims["ticksObserved"] == 31
    result = check_run(tmp_path / TRACE, gate=GATE, report=tmp_path / REPORT)
    verdicts = [p for p in result.problems if p.field == "verdict"]
    assert any(
        "report says PASS, phasef's verdict under the same gate" in p.message
        and "is FAIL: min_ticks: ticksObserved 31 < 100" in p.message
        for p in verdicts
    ), [str(p) for p in result.problems]
    assert result.report is not None and result.report.verdict == "FAIL"


def test_the_honest_report_agrees_figure_by_figure(tmp_path: Path) -> None:
    run_node(tmp_path)
    result = check_run(tmp_path / TRACE, gate=GATE, report=tmp_path / REPORT)
    assert result.ok, [str(p) for p in result.problems]
    assert result.report is not None and result.report.verdict == "PASS"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phasef_tui.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_validate_and_report_build_without_a_session(tmp_path: Path) -> None:
    gate = tmp_path / "gate.toml"
    gate.write_text("[gate]\nmin_ticks = 100\ncontext_budget_chars = 3020\nmax_context_growth_per_tick = 16.0\n")
    run_node(tmp_path / "ok")
    done = _cli("validate", "--report", f"ok/{REPORT}", "--trace", f"ok/{TRACE}", "--gate", str(gate), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS with 107 ticks" in done.stderr

    built = _cli("report", "build", "--trace", f"ok/{TRACE}", "--gate", str(gate), "-o", "mine.json", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    mine = json.loads((tmp_path / "mine.json").read_text())
    assert mine["verdict"] == "PASS" and mine["ticksObserved"] == 107 and mine["runId"] == "node-run-1"

    run_node(tmp_path / "lie", "--lie", "growth")
    args = ["validate", "--report", f"lie/{REPORT}", "--trace", f"lie/{TRACE}", "--gate", str(gate)]
    shown = _cli(*args, "--max-shown", "2", cwd=tmp_path)
    assert shown.returncode == 2
    lines = shown.stdout.splitlines()
    assert len(lines) == 3 and all(re.match(r"^lie/\S+\.json:\d+: [\w.\[\]]+: ", line) for line in lines[:2])
    full = tmp_path / "lie" / f"{TRACE}.problems.txt"
    assert lines[2] == f"4 problem(s); 2 more; full list: lie/{TRACE}.problems.txt"
    assert len(full.read_text().splitlines()) == 4
    as_json = json.loads(_cli(*args, "--json", cwd=tmp_path).stdout)
    assert as_json["ok"] is False and as_json["verdict"] == "FAIL" and len(as_json["problems"]) == 4
    assert {p["field"] for p in as_json["problems"]} >= {"contextProfile.growthPerTick", "verdict"}

    trace_only = _cli("validate", "--trace", f"lie/{TRACE}", "--gate", str(gate), "--json", cwd=tmp_path)
    assert trace_only.returncode == 0 and json.loads(trace_only.stdout)["verdict"] == "FAIL"
    missing = _cli("validate", "--trace", "nope.jsonl", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.jsonl: no such file" in missing.stdout


def test_a_runner_s_own_jsonl_through_a_mapping_file_on_the_step(tmp_path: Path) -> None:
    """A runner that writes ticks only, in its own field names and milliseconds: `trace_map` on the step."""
    from pipeline.bench.validate import validate_step
    from pipeline.jobs.context import StepContext

    run_node(tmp_path)
    own = []
    for line in (tmp_path / TRACE).read_text().splitlines():
        r = json.loads(line)
        if r["kind"] != "tick":
            continue  # no episode records: the importer frames the episodes
        own.append({"ep": r["episode"], "n": r["tick"], "at_ms": round(r["ts"] * 1000), "status": r["outcome"].upper()}
                   | {k: v for k, v in r.items() if k not in ("kind", "episode", "tick", "ts", "outcome")})  # fmt: skip
    (tmp_path / "own.jsonl").write_text("".join(json.dumps(r) + "\n" for r in own))
    (tmp_path / "map.toml").write_text(
        '[fields]\nepisode = "ep"\ntick = "n"\nts = "at_ms"\noutcome = "status"\n[units]\nts = "ms"\n'
        '[values.outcome]\nOK = "ok"\nERROR = "error"\nDEATH = "death"\nSUCCESS = "success"\n'
    )
    art = tmp_path / "art"
    art.mkdir()
    ctx = StepContext(
        session_id="s", session_dir=tmp_path, project_dir=tmp_path, stage="A", step="validate", kind="builtin",
        attempt=1, artifacts_dir=art,
        params={"trace": "own.jsonl", "trace_map": "map.toml", "gate": {"min_ticks": 100}},
    )  # fmt: skip
    summary = validate_step(ctx)
    assert summary["verdict"] == "PASS" and summary["ticksObserved"] == 107
    mine = json.loads((art / "eval_report.json").read_text())
    native = check_run(tmp_path / TRACE, gate=GATE).report
    assert native is not None
    assert mine["mttr"] == report_json(native)["mttr"] and mine["trapInteractions"]["total"] == 3
    assert mine["episodesByOutcome"] == {"death": 1, "success": 4}
    assert Path(summary["trace"]).parent == art  # the canonical import lives with the step's artifacts

    # the runner's report, compared with phasef's report of the import: only what its own JSONL does not carry
    # (the traps each episode armed) differs; death lines are not compared, the import has its own
    claims = ctx.model_copy(update={"params": ctx.params | {"report": REPORT, "check_trace_hash": False}})
    with pytest.raises(StepFailed) as failed:
        validate_step(claims)
    problems = (art / "problems.txt").read_text().splitlines()
    assert len(problems) == 2, problems
    assert all(": trapInteractions.armedEpisodes." in p and "phasef finds no entry" in p for p in problems)
    assert "2 problem(s)" in str(failed.value)

    (tmp_path / "map.toml").write_text('[fields]\nepisode = "ep"\nwhen = "at_ms"\n')
    with pytest.raises(StepFailed, match=r"fields\.when: not a field of phasef\.dirty_trace/1"):
        validate_step(ctx)


TAU_FAIL = Path("/work/shared/fixtures/foreign-traces/tau-bench/gpt-4o-airline_task13_trial0_fail_thrash.json")


@pytest.mark.skipif(not TAU_FAIL.is_file(), reason="the shared foreign-trace fixtures are not here")
def test_a_step_may_declare_the_trace_format_of_any_importer(tmp_path: Path) -> None:
    from pipeline.bench.validate import validate_step
    from pipeline.jobs.context import StepContext

    art = tmp_path / "art"
    art.mkdir()
    ctx = StepContext(
        session_id="s", session_dir=tmp_path, project_dir=tmp_path, stage="A", step="validate", kind="builtin",
        attempt=1, artifacts_dir=art, params={"trace": str(TAU_FAIL), "trace_format": "tau-bench"},
    )  # fmt: skip
    summary = validate_step(ctx)
    mine = json.loads((art / "eval_report.json").read_text())
    assert summary["verdict"] == mine["verdict"] == "FAIL"  # 100 ticks and evidence are not in one tau-bench trial
    assert mine["ticksObserved"] > 0 and mine["trace"]["path"] == summary["trace"]
    assert any(r.startswith("min_ticks: ticksObserved") for r in mine["reasons"])
    wrong = ctx.model_copy(update={"params": {"trace": str(TAU_FAIL), "trace_format": "swe-agent"}})
    with pytest.raises(StepFailed, match=r"cannot import: .*is not a swe-agent file"):
        validate_step(wrong)
