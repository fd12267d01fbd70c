"""Stage A for real: create the tiny model, serve it with mlx_lm.server, run the ``api`` step, judge the trace.

The report's numbers are recomputed here from the trace with plain Python, so a report cannot claim what its trace
does not show.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.bench.api_step import Endpoint, evaluate, run
from pipeline.bench.params import ApiStepParams
from pipeline.bench.validate import validate_files
from pipeline.jobs.context import EVENT_PREFIX, ServiceInfo, StepContext
from pipeline.models.tiny import init_step
from pipeline.report.eval_report import Gate
from pipeline.serve import MlxServe
from tests.step_helpers import step_context


def _ctx(session: Path, step: str, kind: str, params: dict[str, Any], services: dict[str, ServiceInfo]) -> StepContext:
    return step_context(session, "A", step, params, kind=kind, project=session.parent, create=True, session_id="sess",
                        services=services)  # fmt: skip


@pytest.fixture(scope="module")
def stage_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """init model -> start mlx_serve -> api step, timed as one Stage A run."""
    session = tmp_path_factory.mktemp("stage_a") / "session"
    session.mkdir()
    started = time.monotonic()
    model = init_step(_ctx(session, "init_model", "builtin", {"dir": "models/tiny", "seed": 0}, {}))
    service = MlxServe("tiny", {"model": "models/tiny"}, session, session.parent, session / "logs" / "tiny.log")
    info = asyncio.run(service.start(timeout=120))
    try:
        ctx = _ctx(session, "baseline", "api", {}, {"tiny": info})
        summary = run(ctx)
        elapsed = time.monotonic() - started
        yield {"session": session, "ctx": ctx, "summary": summary, "elapsed": elapsed, "info": info, "model": model}
    finally:
        asyncio.run(service.stop())


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_stage_a_runs_in_minutes_with_rich_evidence(stage_a: dict[str, Any]) -> None:
    summary = stage_a["summary"]
    assert stage_a["elapsed"] < 240, stage_a["elapsed"]
    assert summary["verdict"] == "PASS", summary["reasons"]
    assert summary["ticksObserved"] >= 100
    assert summary["deaths"] >= 1 and summary["recovered"] >= 5 and summary["trapInteractions"] >= 5
    assert summary["schemaViolationRate"] > 0.5  # a random-weight model emits garbage
    ticks = [r for r in _records(Path(summary["trace"])) if r["kind"] == "tick"]
    assert {t.get("trap") for t in ticks} >= {"hang", "deadlock", "flaky", "context_bomb", "fatal"}
    assert {t["actor"] for t in ticks} == {"model", "repair", "reflex", "watchdog"}
    assert {t.get("chain_role") for t in ticks} >= {"failure", "attempt", "recovered", "death"}
    assert any(t.get("thrash") for t in ticks)
    assert not (stage_a["ctx"].artifacts_dir / "sandboxes").exists() or not any(
        (stage_a["ctx"].artifacts_dir / "sandboxes").iterdir()
    )


def test_report_numbers_are_the_traces(stage_a: dict[str, Any]) -> None:
    summary = stage_a["summary"]
    report = json.loads(Path(summary["report"]).read_text())
    records = _records(Path(summary["trace"]))
    ticks = [r for r in records if r["kind"] == "tick"]
    assert report["ticksObserved"] == len(ticks)
    assert report["episodes"] == sum(r["kind"] == "episode_start" for r in records)
    assert report["deaths"] == sum(t.get("chain_role") == "death" for t in ticks)
    assert report["episodesByOutcome"]["death"] == report["deaths"]
    assert report["recoveries"]["recovered"] == sum(t.get("chain_role") == "recovered" for t in ticks)
    assert report["recoveries"]["chains"] == len({t["chain_id"] for t in ticks if t.get("chain_id")})
    assert report["trapInteractions"]["total"] == sum(1 for t in ticks if t.get("trap"))
    latencies = sorted(t["latency_s"] for t in ticks if t.get("latency_s") is not None)
    assert report["latency"]["count"] == len(latencies)
    assert report["latency"]["p50"] == pytest.approx(statistics.median(latencies), abs=1e-6)
    p95 = statistics.quantiles(latencies, n=100, method="inclusive")[94]
    assert report["latency"]["p95"] == pytest.approx(p95, abs=1e-6)
    replies = [t for t in ticks if t.get("raw_output") is not None]
    violations = sum(1 for t in ticks if t.get("schema_error"))
    assert report["schemaViolationRate"] == pytest.approx(violations / len(replies), abs=1e-6)
    first: dict[str, dict[str, Any]] = {}
    gaps_ticks, gaps_s = [], []
    for t in ticks:
        if t.get("chain_id"):
            first.setdefault(t["chain_id"], t)
            if t.get("chain_role") == "recovered":
                gaps_ticks.append(t["tick"] - first[t["chain_id"]]["tick"])
                gaps_s.append(t["ts"] - first[t["chain_id"]]["ts"])
    assert report["mttr"]["ticks"] == pytest.approx(statistics.mean(gaps_ticks), abs=1e-5)
    assert report["mttr"]["seconds"] == pytest.approx(statistics.mean(gaps_s), abs=1e-4)
    with_context = [t for t in ticks if t.get("context")]
    for t in with_context:
        assert t["context_chars"] == sum(len(m["content"]) for m in t["context"])
    assert report["contextProfile"]["maxChars"] == max(t["context_chars"] for t in with_context)
    assert report["contextProfile"]["maxChars"] <= report["gate"]["contextBudgetChars"]
    growth = report["contextProfile"]["growthPerTick"]
    assert abs(growth) <= report["gate"]["maxContextGrowthPerTick"]
    assert all(t.get("context") for t in ticks if t["actor"] == "reflex")  # what training pairs are made of
    gate = Gate.from_dict(report["gate"])  # the step's own gate, as config.toml resolved it
    assert validate_files(Path(summary["report"]), Path(summary["trace"]), gate=gate, check_hash=True).errors == []


def test_progress_events_are_rate_limited(stage_a: dict[str, Any], capfd: pytest.CaptureFixture[str]) -> None:
    # the step already ran in the fixture; re-run a short evaluation with the same context to count events
    ctx: StepContext = stage_a["ctx"].model_copy(update={"params": {"episodes": 3, "emit_interval_s": 1.0}})
    started = time.monotonic()
    summary = run(ctx)
    duration = time.monotonic() - started
    events = [
        json.loads(line[len(EVENT_PREFIX) :])
        for line in capfd.readouterr().out.splitlines()
        if line.startswith(EVENT_PREFIX)
    ]
    ticks = [e for e in events if e["event"] == "tick"]
    assert [e["event"] for e in events].count("episode") == 3
    assert 1 <= len(ticks) <= duration / 1.0 + 2
    assert len(ticks) < summary["ticksObserved"]
    assert sum(e["since_last"] for e in ticks) <= summary["ticksObserved"]
    assert ticks[-1]["ticks"] <= summary["ticksObserved"]


def _context_check(report: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in report["protocolChecks"] if c["name"] == "context_bounded")


def test_an_unbounded_prompt_fails_the_context_check(stage_a: dict[str, Any], tmp_path: Path) -> None:
    info: ServiceInfo = stage_a["info"]
    assert info.url and info.model
    common = {"episodes": 3, "traps": ["hang", "flaky", "fatal"], "gate": {"min_ticks": 0}}
    verdicts = {}
    for name, unbounded in (("bounded", False), ("unbounded", True)):
        params = ApiStepParams.model_validate({**common, "unbounded_context": unbounded})
        _, report = asyncio.run(evaluate(params, Endpoint(info.url, info.model, None, "tiny"), out_dir=tmp_path / name))
        verdicts[name] = json.loads((tmp_path / name / "eval_report.json").read_text())
        assert report.ticks_observed > 10
    assert _context_check(verdicts["bounded"])["passed"]
    failed = _context_check(verdicts["unbounded"])
    assert not failed["passed"] and "grows" in failed["detail"]
    assert verdicts["unbounded"]["verdict"] == "FAIL"
    assert any(r.startswith("context_bounded:") for r in verdicts["unbounded"]["reasons"])
    assert verdicts["unbounded"]["contextProfile"]["growthPerTick"] > 50


def test_killing_the_server_mid_run_is_traced_not_a_crash(tmp_path: Path) -> None:
    session = tmp_path / "session"
    init_step(_ctx(session, "init_model", "builtin", {"dir": "models/tiny"}, {}))
    service = MlxServe("tiny", {"model": "models/tiny"}, session, tmp_path, session / "logs" / "tiny.log")
    info = asyncio.run(service.start(timeout=120))
    assert info.url and info.model and service.pid()
    pgid = service.pid()
    seen: dict[str, int] = defaultdict(int)

    def kill_after_a_while(record: dict[str, Any]) -> None:
        seen["ticks"] += 1
        if seen["ticks"] == 15:
            os.killpg(pgid, signal.SIGKILL)

    params = ApiStepParams.model_validate(
        {"episodes": 4, "retries": 1, "backoff": 0.05, "request_timeout": 10, "max_connection_errors": 4}
    )
    try:
        result, report = asyncio.run(
            evaluate(
                params,
                Endpoint(info.url, info.model, None, "tiny"),
                out_dir=tmp_path / "out",
                on_tick=kill_after_a_while,
            )
        )
    finally:
        asyncio.run(service.stop())
    ticks = [r for r in _records(tmp_path / "out" / "dirty_trace.jsonl") if r["kind"] == "tick"]
    lost = [t for t in ticks if t.get("error_class") == "ConnectionError"]
    assert len(lost) >= 4
    assert all(t["attempts"] == 2 and t["outcome"] == "error" and t.get("chain_id") for t in lost)
    assert all(t["actor"] in ("model", "repair") for t in lost)
    assert result.aborted and "unreachable" in result.aborted
    assert report.verdict == "FAIL" and any(r.startswith("run_completed:") for r in report.reasons)
    assert next(c for c in report.protocol_checks if c.name == "trace_schema").passed
    assert next(c for c in report.protocol_checks if c.name == "episodes_complete").passed
