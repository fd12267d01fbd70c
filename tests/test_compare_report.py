"""The baseline vs fine-tuned comparison on synthetic canonical traces whose figures are known by construction.

Each run's ``eval_report.json`` is written by the real ``eval_report.build_report``; the expected figures below are
recomputed here from how the traces were built, not read back from the code under test.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.jobs.context import StepFailed
from pipeline.report.compare import (
    CompareParams,
    build_comparison,
    compare_step,
    render_markdown,
    sign_test,
)
from pipeline.report.eval_report import Gate, build_report, write_report
from pipeline.traces.schema import EpisodeEnd, EpisodeStart, Tick
from tests.step_helpers import step_context

ROOT = Path(__file__).resolve().parents[1]
GATE = Gate(
    min_ticks=10,
    context_budget_chars=10_000,
    max_context_growth_per_tick=50.0,
    context_warmup_ticks=2,
    require_evidence=False,
)


@dataclass
class EpisodeSpec:
    """How one synthetic episode goes: its chains (attempts until the end, and how each ends), its fate."""

    task: str
    chains: list[tuple[int, str]] = field(default_factory=list)
    """(ticks after the failure until the chain ends, 'recovered' | 'death'); schema violations open chains."""
    schema_chains: int = 0
    """How many of the chains start with a schema violation (the first ones)."""
    ok_ticks: int = 3
    solved: bool = True
    latency: float = 1.0
    jitter: float = 0.05
    context: int = 2000


class _TraceBuilder:
    """Appends canonical records for one synthetic run, keeping the tick dicts for recomputing figures."""

    def __init__(self, run_id: str, seed: int) -> None:
        self.run_id = run_id
        self.rng = random.Random(seed)
        self.ts = 1_000_000.0
        self.lines: list[str] = []
        self.ticks: list[dict[str, Any]] = []

    def put(self, record: Any) -> None:
        self.lines.append(record.model_dump_json(by_alias=True, exclude_none=True))

    def tick(self, spec: EpisodeSpec, episode: str, number: int, **fields: Any) -> None:
        latency = max(0.01, self.rng.gauss(spec.latency, spec.jitter))
        self.ts += latency + 0.05
        record = Tick(
            run_id=self.run_id,
            episode=episode,
            task_id=spec.task,
            ts=round(self.ts, 4),
            tick=number,
            latency_s=round(latency, 4),
            context_chars=spec.context + self.rng.randrange(-50, 50),
            raw_output="{}",
            **fields,
        )
        self.put(record)
        self.ticks.append(record.model_dump())

    def episode(self, n: int, spec: EpisodeSpec) -> None:
        episode = f"{self.run_id}-ep{n}"
        self.put(EpisodeStart(run_id=self.run_id, episode=episode, task_id=spec.task, ts=self.ts, seed=0))
        steps: list[dict[str, Any]] = []
        died = False
        for c, (length, end) in enumerate(spec.chains):
            chain = f"{episode}-c{c}"
            schema = c < spec.schema_chains
            steps.append(
                {
                    "outcome": "error",
                    "error_class": "SchemaViolation" if schema else "CheckFailed",
                    "schema_error": "not JSON" if schema else None,
                    "chain_id": chain,
                    "chain_role": "failure",
                }
            )
            steps += [
                {"outcome": "error", "error_class": "CheckFailed", "chain_id": chain, "chain_role": "attempt"}
            ] * (length - 1)
            if end == "death":
                steps.append(
                    {
                        "outcome": "death",
                        "error_class": "Fatal",
                        "chain_id": chain,
                        "chain_role": "death",
                        "trap": "fatal",
                    }
                )
                died = True
                break
            steps.append({"outcome": "ok", "chain_id": chain, "chain_role": "recovered", "recovery": "model"})
        if not died:
            steps += [{"outcome": "ok", "progress": True}] * spec.ok_ticks
            if spec.solved:
                steps.append({"outcome": "success", "progress": True})
        for number, fields in enumerate(steps):
            self.tick(spec, episode, number, **fields)
        outcome = "death" if died else "success" if spec.solved else "timeout"
        solved = spec.solved and not died
        self.put(
            EpisodeEnd(
                run_id=self.run_id,
                episode=episode,
                task_id=spec.task,
                ts=self.ts,
                outcome=outcome,
                ticks=len(steps),
                solved=solved,
            )
        )


def write_run(path: Path, specs: list[EpisodeSpec], seed: int, run_id: str) -> list[dict[str, Any]]:
    """Write the trace and return its tick dicts (for recomputing figures in the test)."""
    builder = _TraceBuilder(run_id, seed)
    for n, spec in enumerate(specs):
        builder.episode(n, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(builder.lines) + "\n")
    return builder.ticks


def write_eval(folder: Path, specs: list[EpisodeSpec], seed: int, *, task_hash: str = "T" * 64, gate: Gate = GATE):
    trace = folder / "dirty_trace.jsonl"
    ticks = write_run(trace, specs, seed, folder.name)
    report = build_report(trace, run_id=folder.name, gate=gate, task_set_hash=task_hash, model={"id": folder.name})
    write_report(report, folder / "eval_report.json")
    return ticks


def baseline_specs(n: int = 30) -> list[EpisodeSpec]:
    """Slow, schema-violating, recovers late; episode t3 dies, t5 is unsolved."""
    specs = []
    for i in range(n):
        chains = [(1, "recovered"), (3, "recovered")]
        if i == 3:
            chains = [(1, "recovered"), (2, "death")]
        specs.append(EpisodeSpec(f"t{i}", chains=chains, schema_chains=1, solved=i != 5, latency=1.0))
    return specs


def finetuned_specs(n: int = 30) -> list[EpisodeSpec]:
    """Fast, no schema violations, first-attempt recoveries; t3 survives, t5 is solved, t7 now unsolved."""
    return [
        EpisodeSpec(f"t{i}", chains=[(1, "recovered"), (1, "recovered")], solved=i != 7, latency=0.5) for i in range(n)
    ]


def params(base: Path, fine: Path, **extra: Any) -> CompareParams:
    return CompareParams.model_validate(
        {
            "baseline": {"report": str(base / "eval_report.json"), "name": "base"},
            "finetuned": {"report": str(fine / "eval_report.json"), "name": "tuned"},
            "noise": {"resamples": 500},
            "min_ticks": 10,
            **extra,
        }
    )


def deltas_by_metric(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["metric"]: d for d in doc["deltas"]}


def resolve(p: str) -> Path:
    return Path(p)


# -- tests ----------------------------------------------------------------------------------------------------
def test_deltas_directions_and_noise_match_the_traces(tmp_path: Path) -> None:
    base_ticks = write_eval(tmp_path / "base", baseline_specs(), seed=1)
    fine_ticks = write_eval(tmp_path / "fine", finetuned_specs(), seed=2)
    doc = build_comparison(params(tmp_path / "base", tmp_path / "fine"), resolve)
    assert doc["status"] == "compared" and doc["self_check"] == []
    assert doc["pairs"] == {"count": 30, "unpaired_baseline": [], "unpaired_finetuned": []}
    d = deltas_by_metric(doc)

    # latency: recomputed from the ticks (median, and p95 with linear interpolation)
    base_lat = [t["latency_s"] for t in base_ticks]
    fine_lat = [t["latency_s"] for t in fine_ticks]
    assert d["latency_p50_s"]["baseline"] == pytest.approx(statistics.median(base_lat), abs=1e-6)
    assert d["latency_p50_s"]["finetuned"] == pytest.approx(statistics.median(fine_lat), abs=1e-6)
    q = statistics.quantiles(base_lat, n=20, method="inclusive")[18]
    assert d["latency_p95_s"]["baseline"] == pytest.approx(q, abs=1e-6)
    assert d["latency_p50_s"]["direction"] == "better" and d["latency_p50_s"]["beyond_noise"] is True
    lo, hi = d["latency_p50_s"]["ci"]
    assert lo < d["latency_p50_s"]["delta"] < hi < 0

    # schema violations: one per baseline episode (30) over every reply; none after fine-tuning
    assert d["schema_violation_rate"]["baseline"] == pytest.approx(30 / len(base_ticks), abs=1e-6)
    assert d["schema_violation_rate"]["finetuned"] == 0
    assert d["schema_violation_rate"]["direction"] == "better" and d["schema_violation_rate"]["beyond_noise"]
    assert d["schema_violation_rate"]["sign_test"]["negative"] == 30

    # chains: baseline 60 (two per episode); t3's second dies; the 30 one-tick chains recover at the first attempt
    assert d["recovery_rate"]["baseline"] == pytest.approx(59 / 60)
    assert d["reflex_quality"]["baseline"] == pytest.approx(30 / 60)
    assert d["reflex_quality"]["finetuned"] == 1.0 and d["recovery_rate"]["finetuned"] == 1.0
    assert d["reflex_quality"]["direction"] == "better" and d["reflex_quality"]["beyond_noise"]
    assert d["mttr_ticks"]["baseline"] == pytest.approx((30 * 1 + 29 * 3) / 59, abs=1e-6)
    assert d["mttr_ticks"]["finetuned"] == 1.0 and d["mttr_ticks"]["direction"] == "better"

    # one death in the baseline, none after; one pair flipping cannot be told from noise
    assert d["deaths"]["baseline"] == 1 and d["deaths"]["finetuned"] == 0
    assert d["deaths"]["direction"] == "better" and d["deaths"]["beyond_noise"] is False
    assert d["ticks_observed"]["baseline"] == len(base_ticks) and d["ticks_observed"]["finetuned"] == len(fine_ticks)
    assert d["solved_rate"]["baseline"] == pytest.approx(28 / 30) and d["solved_rate"]["finetuned"] == pytest.approx(
        29 / 30
    )

    # the prompt size has the same distribution on both sides: whatever the sign, it is noise
    assert d["context_p95_chars"]["beyond_noise"] is False
    assert d["context_p95_chars"]["direction"] in ("better", "worse")

    flips = doc["flips"]
    assert [f["task"] for f in flips["solved"]] == ["t3#seed=0", "t5#seed=0"]
    assert [f["task"] for f in flips["unsolved"]] == ["t7#seed=0"]
    assert [f["task"] for f in flips["survived"]] == ["t3#seed=0"] and flips["died"] == []

    assert doc["evidence"]["complete"] is True
    blockers = doc["residual_blockers"]
    assert any("solved by the baseline are unsolved" in b for b in blockers)
    assert not any("death(s) remain" in b for b in blockers)

    md = render_markdown(doc)
    assert "| latency p50 | s |" in md and "solved → unsolved: `t7#seed=0`" in md


def test_the_noise_test_is_paired_and_reproducible(tmp_path: Path) -> None:
    same = [EpisodeSpec(f"t{i}", chains=[(1, "recovered")], latency=1.0 + i / 10, jitter=0.002) for i in range(20)]
    shifted = [EpisodeSpec(s.task, s.chains, latency=s.latency + 0.03, jitter=0.002) for s in same]
    write_eval(tmp_path / "base", same, seed=1)
    write_eval(tmp_path / "fine", shifted, seed=2)
    first = deltas_by_metric(build_comparison(params(tmp_path / "base", tmp_path / "fine"), resolve))
    again = deltas_by_metric(build_comparison(params(tmp_path / "base", tmp_path / "fine"), resolve))
    # the same +0.03 s in every pair: small next to the spread across episodes, yet clearly real when paired
    lat = first["latency_p50_s"]
    assert lat["direction"] == "worse" and lat["beyond_noise"] is True and lat["ci"][0] > 0
    assert lat["sign_test"]["positive"] == 20 and lat["sign_test"]["p_value"] < 1e-5
    assert first == again
    reseeded = build_comparison(
        params(tmp_path / "base", tmp_path / "fine", noise={"resamples": 500, "seed": 9}), resolve
    )
    assert reseeded["noise"]["seed"] == 9
    assert deltas_by_metric(reseeded)["latency_p50_s"]["ci"] == pytest.approx(lat["ci"], abs=0.003)
    blockers = build_comparison(params(tmp_path / "base", tmp_path / "fine"), resolve)["residual_blockers"]
    assert any(b.startswith("latency p50 (s) worse beyond noise") for b in blockers)


def test_too_few_pairs_are_never_beyond_noise(tmp_path: Path) -> None:
    write_eval(tmp_path / "base", [EpisodeSpec(f"t{i}", latency=2.0) for i in range(3)], seed=1)
    write_eval(tmp_path / "fine", [EpisodeSpec(f"t{i}", latency=0.2) for i in range(4)], seed=2)
    doc = build_comparison(params(tmp_path / "base", tmp_path / "fine"), resolve)
    d = deltas_by_metric(doc)
    assert d["latency_p50_s"]["direction"] == "better" and d["latency_p50_s"]["beyond_noise"] is False
    assert doc["pairs"]["unpaired_finetuned"] == ["fine-ep3"]
    assert any("only 3 paired episode(s)" in b for b in doc["residual_blockers"])
    assert doc["evidence"]["complete"] is False
    assert "no death trace in either run" in doc["evidence"]["missing"]


@pytest.mark.parametrize(
    ("fine_kwargs", "reason"),
    [
        ({"task_hash": "U" * 64}, "taskSetHash differs"),
        ({"gate": Gate(11, 10_000, 50.0, 2, False)}, "gateConfigHash differs"),
    ],
)
def test_refuses_runs_that_were_not_judged_alike(tmp_path: Path, fine_kwargs: dict[str, Any], reason: str) -> None:
    write_eval(tmp_path / "base", baseline_specs(6), seed=1)
    write_eval(tmp_path / "fine", finetuned_specs(6), seed=2, **fine_kwargs)
    session = tmp_path / "session"
    ctx = step_context(session, "E", "compare", params(tmp_path / "base", tmp_path / "fine").model_dump())
    with pytest.raises(StepFailed, match=f"refused to compare: {reason}"):
        compare_step(ctx)
    for folder in (session / "report", session / "artifacts" / "E" / "compare"):
        doc = json.loads((folder / "comparison.json").read_text())
        assert doc["status"] == "refused" and reason in doc["refusal"][0] and "deltas" not in doc
        assert "## Refused" in (folder / "comparison.md").read_text()


def test_refuses_a_missing_hash_and_a_trace_changed_after_its_report(tmp_path: Path) -> None:
    write_eval(tmp_path / "base", baseline_specs(6), seed=1)
    write_eval(tmp_path / "fine", finetuned_specs(6), seed=2)
    report = tmp_path / "fine" / "eval_report.json"
    data = json.loads(report.read_text())
    del data["gateConfigHash"]
    report.write_text(json.dumps(data))
    doc = build_comparison(params(tmp_path / "base", tmp_path / "fine"), resolve)
    assert doc["status"] == "refused" and doc["refusal"][0].startswith("gateConfigHash missing from")

    write_eval(tmp_path / "fine", finetuned_specs(6), seed=2)
    with (tmp_path / "base" / "dirty_trace.jsonl").open("a") as fh:
        fh.write("\n")
    doc = build_comparison(params(tmp_path / "base", tmp_path / "fine"), resolve)
    assert doc["status"] == "refused" and "changed since" in doc["refusal"][0]


def test_compare_step_writes_both_places_and_summarises(tmp_path: Path) -> None:
    write_eval(tmp_path / "base", baseline_specs(12), seed=1)
    write_eval(tmp_path / "fine", finetuned_specs(12), seed=2)
    session = tmp_path / "session"
    ctx = step_context(session, "E", "compare", params(tmp_path / "base", tmp_path / "fine").model_dump())
    summary = compare_step(ctx)
    assert summary["status"] == "compared" and summary["pairs"] == 12
    assert "latency_p50_s" in summary["better"] and "schema_violation_rate" in summary["beyond_noise"]
    assert summary["flips"] == {"solved": 2, "unsolved": 1, "died": 0, "survived": 1}
    a = (session / "report" / "comparison.json").read_text()
    assert a == (session / "artifacts" / "E" / "compare" / "comparison.json").read_text()
    assert json.loads(a)["baseline"]["name"] == "base"
    # the report opens with the pass criteria as far as the comparison can judge them; the rest comes later
    doc = json.loads(a)
    assert list(doc)[:4] == ["schema", "pass_criteria", "final_decision", "overrides"]
    assert [(c["criterion"], c["met"]) for c in doc["pass_criteria"]] == [
        ("evidence", True),
        ("comparison", True),
        ("audit", False),
    ]
    assert doc["pass_criteria"][2]["evidence"] == "not judged yet: the final audit reads this comparison"
    assert doc["final_decision"]["decision"] == "pending" and doc["overrides"] is None
    md = (session / "report" / "comparison.md").read_text()
    assert md.startswith("# Baseline vs fine-tuned\n\n## Pass criteria\n\n| criterion | met | evidence |\n")
    assert "| recursive audit verdict = GO | **no** | not judged yet" in md
    assert "**Final decision: pending**" in md and md.index("**Final decision") < md.index("## Delta table")


def test_the_same_model_on_both_sides_gets_role_names(tmp_path: Path) -> None:
    write_eval(tmp_path / "base", baseline_specs(6), seed=1)
    write_eval(tmp_path / "fine", finetuned_specs(6), seed=2)
    for side in ("base", "fine"):
        report = tmp_path / side / "eval_report.json"
        data = json.loads(report.read_text())
        data["model"] = {"id": "tiny-qwen3"}
        report.write_text(json.dumps(data))
    p = params(tmp_path / "base", tmp_path / "fine")
    p.baseline.name = p.finetuned.name = None
    doc = build_comparison(p, resolve)
    assert doc["baseline"]["name"] == "tiny-qwen3 (baseline)" and doc["finetuned"]["name"] == "tiny-qwen3 (finetuned)"


def test_sign_test_exact_values() -> None:
    assert sign_test([1.0] * 10)["p_value"] == pytest.approx(2 / 1024)
    assert sign_test([1.0, -1.0, 0.0]) == {"positive": 1, "negative": 1, "ties": 1, "p_value": 1.0}
    assert sign_test([]) == {"positive": 0, "negative": 0, "ties": 0, "p_value": 1.0}
