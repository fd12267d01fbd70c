"""Eval report metrics and checks, computed from hand-made traces whose answers are known."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.bench.publish_schema import SCHEMA_FILE, schema_text
from pipeline.report.eval_report import (
    Gate,
    build_report,
    compute_metrics,
    load_report,
    percentile,
    write_report,
)
from pipeline.traces.growth import GrowthFit

GATE = Gate(
    min_ticks=5,
    context_budget_chars=1000,
    max_context_growth_per_tick=10.0,
    context_warmup_ticks=2,
    require_evidence=True,
)


def tick(episode: str, n: int, ts: float, outcome: str = "ok", **extra: Any) -> dict[str, Any]:
    return {"kind": "tick", "episode": episode, "tick": n, "ts": ts, "outcome": outcome, "context_chars": 500} | extra


def sample_records() -> list[dict[str, Any]]:
    """Two episodes: a recovered chain (4 ticks, 3 s), a flaky trap, and a fatal death."""
    return [
        {"kind": "episode_start", "episode": "e1", "ts": 0.0, "traps": ["flaky"], "context_window": 1},
        tick(
            "e1",
            0,
            10.0,
            "error",
            error_class="SchemaViolation",
            schema_error="not JSON",
            raw_output="zz",
            latency_s=0.1,
            chain_id="e1-c1",
            chain_role="failure",
        ),
        tick(
            "e1",
            1,
            11.0,
            "error",
            actor="repair",
            error_class="SchemaViolation",
            raw_output="zz",
            latency_s=0.3,
            chain_id="e1-c1",
            chain_role="attempt",
            recovery="schema_repair",
        ),
        tick(
            "e1",
            2,
            12.0,
            "error",
            actor="reflex",
            error_class="CheckFailed",
            trap="flaky",
            chain_id="e1-c1",
            chain_role="attempt",
            recovery="reflex",
        ),
        tick(
            "e1",
            3,
            13.0,
            "ok",
            actor="reflex",
            trap="flaky",
            chain_id="e1-c1",
            chain_role="recovered",
            recovery="reflex",
            thrash=True,
        ),
        tick("e1", 4, 14.0, "success", raw_output='{"act":"answer","arg":"x"}', latency_s=0.2),
        {"kind": "episode_end", "episode": "e1", "ts": 15.0, "outcome": "success", "ticks": 5, "solved": True},
        {"kind": "episode_start", "episode": "e2", "ts": 16.0, "traps": ["fatal"]},
        tick("e2", 0, 17.0, "ok", raw_output='{"act":"list","arg":""}', latency_s=0.4),
        tick(
            "e2",
            1,
            18.0,
            "death",
            actor="reflex",
            error_class="Fatal",
            trap="fatal",
            chain_id="e2-c1",
            chain_role="death",
            death_reason="wiped",
        ),
        {"kind": "episode_end", "episode": "e2", "ts": 19.0, "outcome": "death", "ticks": 2},
    ]


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_percentile_interpolates_like_numpy_linear() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert percentile([5.0, 1.0, 3.0], 0) == 1.0 and percentile([5.0, 1.0, 3.0], 100) == 5.0


def test_growth_is_a_within_episode_slope_that_ignores_episode_offsets() -> None:
    fit = GrowthFit(0)
    for key, points in {"a": [(0, 100), (1, 110), (2, 120)], "b": [(0, 1000), (1, 1010)]}.items():
        fit.start(key)
        for x, y in points:
            fit.add(key, x, y)
    assert fit.growth() == pytest.approx(10.0)
    lone = GrowthFit(0)
    lone.add("a", 0, 5)
    assert lone.growth() is None
    late = GrowthFit()  # default warm-up: context_window + 1, else 5
    late.start("w", context_window=1)
    for x, y in [(0, 900), (1, 10), (2, 20), (3, 30)]:
        late.add("w", x, y)
    assert late.growth() == pytest.approx(10.0)


def test_metrics_from_a_known_trace(tmp_path: Path) -> None:
    m = compute_metrics(write(tmp_path / "t.jsonl", sample_records()))
    assert m.ticks_observed == 7 and m.episodes == 2 and m.solved == 1
    assert m.episodes_by_outcome == {"death": 1, "success": 1}
    assert m.deaths == 1 and m.death_records[0].trap == "fatal" and m.death_records[0].line == 10
    assert (m.recoveries.chains, m.recoveries.recovered, m.recoveries.died) == (2, 1, 1)
    assert m.recoveries.by_mechanism == {"reflex": 1}
    assert m.mttr.samples == 1 and m.mttr.ticks == 3.0 and m.mttr.seconds == 3.0
    assert m.trap_interactions.total == 3 and m.trap_interactions.by_kind == {"fatal": 1, "flaky": 2}
    assert m.trap_interactions.armed_episodes == {"fatal": 1, "flaky": 1}
    assert m.latency.count == 4 and m.latency.p50 == pytest.approx(0.25) and m.latency.max == 0.4
    assert (m.model_turns, m.model_replies, m.schema_violations) == (4, 4, 2)
    assert m.schema_violation_rate == 0.5
    assert m.thrash_ticks == 1
    assert m.context_profile.max_chars == 500 and m.context_profile.growth_per_tick == 0.0
    assert m.context_profile.warmup_ticks is None  # per episode: context_window + 1


def test_a_good_trace_passes_every_check(tmp_path: Path) -> None:
    trace = write(tmp_path / "t.jsonl", sample_records())
    report = build_report(trace, run_id="r", gate=GATE, task_set_hash="h")
    assert report.verdict == "PASS", report.reasons
    names = {c.name for c in report.protocol_checks}
    assert {"trace_schema", "episodes_complete", "chains_well_formed", "context_bounded", "min_ticks"} <= names


def test_too_few_ticks_fails_even_when_the_protocol_passes(tmp_path: Path) -> None:
    trace = write(tmp_path / "t.jsonl", sample_records())
    gate = Gate(100, 1000, 10.0, 2, True)
    report = build_report(trace, run_id="r", gate=gate, task_set_hash="h")
    assert report.verdict == "FAIL"
    assert report.reasons == ["min_ticks: ticksObserved 7 < 100"]
    assert all(c.passed for c in report.protocol_checks if c.kind == "protocol")


def test_missing_evidence_fails(tmp_path: Path) -> None:
    records = [r for r in sample_records() if r.get("episode") == "e1"]
    report = build_report(write(tmp_path / "t.jsonl", records), run_id="r", gate=GATE, task_set_hash="h")
    assert report.verdict == "FAIL"
    assert any(r.startswith("death_trace: no death") for r in report.reasons)


def test_growing_prompt_fails_the_context_check(tmp_path: Path) -> None:
    records = sample_records()
    for r in records:
        if r["kind"] == "tick":
            r["context_chars"] = 200 + 150 * r["tick"]
    report = build_report(write(tmp_path / "t.jsonl", records), run_id="r", gate=GATE, task_set_hash="h")
    check = next(c for c in report.protocol_checks if c.name == "context_bounded")
    assert not check.passed and "grows 150.0 chars/tick" in check.detail
    assert report.context_profile.growth_per_tick == pytest.approx(150.0)


def test_broken_structure_is_reported_with_file_and_line(tmp_path: Path) -> None:
    records = sample_records()
    records[3]["tick"] = 7  # e1 tick 2 -> 7
    records[4]["chain_id"] = "other"  # the recovered tick names another chain
    del records[-1]  # e2 never ends
    records.insert(2, {"kind": "tick", "episode": "e1", "tick": "x"})  # schema violation
    trace = write(tmp_path / "t.jsonl", records)
    report = build_report(trace, run_id="r", gate=GATE, task_set_hash="h")
    by_name = {c.name: c for c in report.protocol_checks}
    assert not by_name["trace_schema"].passed and f"{trace}:3:" in by_name["trace_schema"].detail
    assert "field 'tick'" in by_name["trace_schema"].detail
    assert not by_name["episodes_complete"].passed
    assert f"{trace}:5: field 'tick': expected" in by_name["episodes_complete"].detail
    assert "never ends" in by_name["episodes_complete"].detail
    assert not by_name["chains_well_formed"].passed and "other" in by_name["chains_well_formed"].detail
    assert report.verdict == "FAIL" and len(report.reasons) >= 3


def test_a_leaked_key_fails_without_being_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_TEST_KEY", "sk-very-secret-123")
    records = sample_records()
    records[1]["raw_output"] = "my key is sk-very-secret-123"
    report = build_report(
        write(tmp_path / "t.jsonl", records), run_id="r", gate=GATE, task_set_hash="h", api_key_env="BENCH_TEST_KEY"
    )
    assert "no_secret_in_trace" in " ".join(report.reasons)
    out = tmp_path / "report.json"
    write_report(report, out)
    assert "sk-very-secret-123" not in out.read_text()


def test_report_round_trips_with_camel_case_keys(tmp_path: Path) -> None:
    trace = write(tmp_path / "t.jsonl", sample_records())
    report = build_report(trace, run_id="r", gate=GATE, task_set_hash="h", aborted="endpoint gone")
    path = tmp_path / "eval_report.json"
    write_report(report, path)
    data = json.loads(path.read_text())
    assert list(data)[:4] == ["schema", "runId", "createdAt", "verdict"]
    assert data["ticksObserved"] == 7 and data["schemaViolationRate"] == 0.5
    assert data["contextProfile"]["growthPerTick"] == 0.0 and data["mttr"]["ticksP50"] == 3.0
    assert "run_completed: run aborted: endpoint gone" in data["reasons"]
    assert load_report(path) == report
    assert report.gate_config_hash == build_report(trace, run_id="x", gate=GATE, task_set_hash="h").gate_config_hash
    other = Gate(5, 1000, 11.0, 2, True)
    assert report.gate_config_hash != build_report(trace, run_id="r", gate=other, task_set_hash="h").gate_config_hash


def test_published_schema_is_up_to_date() -> None:
    committed = Path(__file__).resolve().parents[1] / "schemas" / SCHEMA_FILE
    assert committed.read_text() == schema_text()
    done = subprocess.run([sys.executable, "-m", "pipeline.bench.publish_schema", "--check"], capture_output=True)
    assert done.returncode == 0, done.stderr
