"""Baseline vs fine-tuned: the comparison report (``comparison.json`` + ``comparison.md``) of plan Stage E.

This module compares two runs; reading a run lives in ``runs``, the statistics in ``compare_stats`` and the
Markdown in ``compare_render`` (all three re-exported here).

Both runs are measured from their dirty traces alone. The headline figures come from ``eval_report.compute_metrics``
(the same function that wrote each run's own report); the noise test needs the same figures per episode, so each
trace is also split into ``EpisodeStats`` with the same definitions, and a self-check compares the two (a
disagreement is listed in the report rather than hidden).

A difference counts as beyond run-to-run noise only when a paired bootstrap says so: episodes are paired across
the runs by task (the task set is the same, or the comparison is refused), the pairs are resampled with a fixed
seed, each metric is recomputed on both sides of every resample, and the 95% interval of the difference must
exclude zero. An exact sign test over the per-episode differences is reported next to it.

The comparison is refused (``status: refused``, and the step fails) when the two reports were not judged alike:
different or missing ``taskSetHash`` or ``gateConfigHash``, or a trace that no longer matches its report's hash.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.jobs.context import StepContext, StepFailed, parse_params
from pipeline.report import criteria
from pipeline.report.compare_render import render_markdown, write_outputs
from pipeline.report.compare_stats import (
    METRIC_BY_KEY,
    METRICS,
    EpisodeStats,
    MetricSpec,
    NoiseParams,
    bootstrap_delta,
    direction,
    episode_stats,
    headline,
    pair_episodes,
    pairing_key,
    sign_test,
)
from pipeline.report.paths import relative_text, session_relative
from pipeline.report.runs import RunData, RunProblem, RunRef, load_run, read_report, trace_of

__all__ = [
    "COMPARISON_SCHEMA",
    "METRICS",
    "METRIC_BY_KEY",
    "CompareParams",
    "EpisodeStats",
    "MetricSpec",
    "NoiseParams",
    "RunData",
    "RunProblem",
    "RunRef",
    "bootstrap_delta",
    "build_comparison",
    "compare_runs",
    "compare_step",
    "episode_stats",
    "evidence_completeness",
    "load_run",
    "read_report",
    "refusal_reasons",
    "render_markdown",
    "residual_blockers",
    "self_check",
    "sign_test",
    "trace_of",
    "with_pending_criteria",
    "write_outputs",
]

COMPARISON_SCHEMA = "phasef.comparison/1"


# -- params -------------------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CompareParams(_Strict):
    baseline: RunRef
    finetuned: RunRef
    noise: NoiseParams = Field(default_factory=NoiseParams)
    min_ticks: int = Field(default=100, ge=0, description="fewer ticks observed in a run is a residual blocker")
    out: str = Field(default="report", description="folder for comparison.json/.md, session-relative")


# -- the comparison ---------------------------------------------------------------------------------------------
def refusal_reasons(base: RunData, fine: RunData) -> list[str]:
    reasons = []
    for label, b, f in (
        ("taskSetHash", base.task_set_hash, fine.task_set_hash),
        ("gateConfigHash", base.gate_config_hash, fine.gate_config_hash),
    ):
        if b is None or f is None:
            missing = [r.report_path for r, v in ((base, b), (fine, f)) if v is None]
            reasons.append(f"{label} missing from {', '.join(str(p) for p in missing)}: cannot show the runs match")
        elif b != f:
            what = "task set" if label == "taskSetHash" else "gate config"
            reasons.append(f"{label} differs ({b[:12]}… vs {f[:12]}…): the runs did not use the same {what}")
    return reasons


def self_check(run: RunData) -> list[str]:
    """Where the per-episode split disagrees with ``compute_metrics`` (should never happen)."""
    problems = []
    direct = headline(run.metrics)
    for spec in METRICS:
        if spec.key == "reflex_quality":
            continue
        a, b = direct[spec.key], spec.aggregate(run.episodes)
        if (a is None) != (b is None) or (a is not None and b is not None and abs(a - b) > 1e-6 * max(1, abs(a))):
            problems.append(f"{run.role} {spec.key}: eval_report {a} vs per-episode {b}")
    return problems


def compare_runs(base: RunData, fine: RunData, params: CompareParams) -> dict[str, Any]:
    pairs, only_base, only_fine = pair_episodes(base.episodes, fine.episodes)
    noise = params.noise
    base_values, fine_values = base.values(), fine.values()
    deltas = []
    for spec in METRICS:
        b, f = base_values[spec.key], fine_values[spec.key]
        testable = spec.noise_testable and len(pairs) >= noise.min_pairs
        ci = bootstrap_delta(spec, pairs, noise) if testable else None
        per_pair = [(spec.episode_value(x), spec.episode_value(y)) for x, y in pairs]
        diffs = [fy - fx for fx, fy in per_pair if fx is not None and fy is not None]
        beyond = ci is not None and (ci[0] > 0 or ci[1] < 0)
        deltas.append(
            {
                "metric": spec.key,
                "label": spec.label,
                "unit": spec.unit,
                "better": spec.better,
                "blocking": spec.blocking,
                "baseline": b,
                "finetuned": f,
                "delta": None if b is None or f is None else f - b,
                "direction": direction(spec, b, f),
                "beyond_noise": beyond,
                "ci": list(ci) if ci else None,
                "sign_test": sign_test(diffs),
                "pairs_used": len(diffs),
            }
        )
    flips: dict[str, list[dict[str, str]]] = {"solved": [], "unsolved": [], "died": [], "survived": []}
    for x, y in pairs:
        entry = {"task": pairing_key(x), "baseline_episode": x.episode, "finetuned_episode": y.episode}
        if x.solved != y.solved:
            flips["solved" if y.solved else "unsolved"].append(entry)
        if x.died != y.died:
            flips["died" if y.died else "survived"].append(entry)
    evidence = evidence_completeness(base, fine)
    pair_info: dict[str, Any] = {"count": len(pairs), "unpaired_baseline": only_base, "unpaired_finetuned": only_fine}
    result: dict[str, Any] = {
        "pairs": pair_info,
        "deltas": deltas,
        "flips": flips,
        "evidence": evidence,
        "self_check": self_check(base) + self_check(fine),
    }
    result["residual_blockers"] = residual_blockers(fine, deltas, flips, evidence, pair_info, params)
    return result


def evidence_completeness(base: RunData, fine: RunData) -> dict[str, Any]:
    """The plan's deep-water evidence: a death trace, a recovery chain, a context profile in each run."""
    eb, ef = base.evidence(), fine.evidence()
    missing = []
    if eb["death_traces"] == 0 and ef["death_traces"] == 0:
        missing.append("no death trace in either run")
    if eb["recovered_chains"] == 0 and ef["recovered_chains"] == 0:
        missing.append("no recovered chain in either run")
    for run, ev in ((base, eb), (fine, ef)):
        if not ev["context_profile"]:
            missing.append(f"no context profile in the {run.role} run")
    return {"complete": not missing, "missing": missing, "baseline": eb, "finetuned": ef}


def residual_blockers(
    fine: RunData,
    deltas: list[dict[str, Any]],
    flips: dict[str, list[dict[str, str]]],
    evidence: dict[str, Any],
    pairs: dict[str, Any],
    params: CompareParams,
) -> list[str]:
    blockers = [f"evidence incomplete: {m}" for m in evidence["missing"]]
    m = fine.metrics
    if m.deaths:
        episodes = sorted({d.episode for d in m.death_records})
        shown = ", ".join(episodes[:8]) + (" …" if len(episodes) > 8 else "")
        blockers.append(f"{m.deaths} death(s) remain in the fine-tuned run ({shown})")
    open_chains = m.recoveries.chains - m.recoveries.recovered
    if open_chains:
        blockers.append(f"{open_chains} failure chain(s) not recovered in the fine-tuned run")
    if m.schema_violations:
        blockers.append(f"{m.schema_violations} schema violation(s) remain in the fine-tuned run")
    for d in deltas:
        if d["direction"] == "worse" and d["beyond_noise"] and d["blocking"]:
            lo, hi = d["ci"]
            blockers.append(
                f"{d['label']} ({d['unit']}) worse beyond noise: {d['delta']:+.4g} (CI {lo:+.4g}..{hi:+.4g})"
            )
    if flips["unsolved"]:
        blockers.append(f"{len(flips['unsolved'])} episode(s) solved by the baseline are unsolved after fine-tuning")
    if flips["died"]:
        blockers.append(f"{len(flips['died'])} episode(s) that survived in the baseline die after fine-tuning")
    if m.ticks_observed < params.min_ticks:
        blockers.append(f"ticksObserved {m.ticks_observed} < {params.min_ticks} in the fine-tuned run")
    if fine.report.get("verdict") != "PASS":
        reasons = "; ".join(str(r) for r in fine.report.get("reasons", [])[:3]) or "no verdict recorded"
        blockers.append(f"the fine-tuned run's own report is not PASS: {reasons}")
    if pairs["count"] < params.noise.min_pairs:
        blockers.append(f"only {pairs['count']} paired episode(s): no difference can be told from noise")
    if pairs["unpaired_baseline"] or pairs["unpaired_finetuned"]:
        blockers.append(
            f"episodes without a partner: {len(pairs['unpaired_baseline'])} baseline, "
            f"{len(pairs['unpaired_finetuned'])} fine-tuned"
        )
    return blockers


def build_comparison(
    params: CompareParams, resolve: Callable[[str], Path], session_dir: Path | None = None
) -> dict[str, Any]:
    """The comparison document; ``status`` is ``refused`` (with reasons) when the runs cannot be compared.

    Files inside ``session_dir`` are named relative to it (in the runs' summaries and in the refusal reasons)."""
    doc: dict[str, Any] = {
        "schema": COMPARISON_SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "noise": {"method": "paired bootstrap over episodes", **params.noise.model_dump()},
    }
    runs: dict[str, RunData] = {}
    problems = []
    for role, ref in (("baseline", params.baseline), ("finetuned", params.finetuned)):
        try:
            runs[role] = load_run(role, ref, resolve)
        except RunProblem as exc:
            problems.append(str(exc))
    if len(runs) == 2 and runs["baseline"].name == runs["finetuned"].name:
        for role, run in runs.items():  # the same base model served twice: tell the columns apart
            run.name = f"{run.name} ({role})"
    for role, ref in (("baseline", params.baseline), ("finetuned", params.finetuned)):
        doc[role] = (
            runs[role].summary(session_dir)
            if role in runs
            else {"name": ref.name or role, "report": session_relative(ref.report, session_dir)}
        )
    if not problems:
        problems = refusal_reasons(runs["baseline"], runs["finetuned"])
    problems = [relative_text(p, session_dir) for p in problems]
    if problems:
        doc.update(status="refused", refusal=problems)
        return doc
    doc.update(status="compared", refusal=[])
    doc.update(compare_runs(runs["baseline"], runs["finetuned"], params))
    return doc


def with_pending_criteria(doc: dict[str, Any]) -> dict[str, Any]:
    """The document opening with the pass criteria as far as this comparison can judge them (the audit and the
    decision come later; the run's end rewrites the opening of ``report/comparison.*`` with the final state)."""
    judged = criteria.judge_comparison(doc, "this comparison", None)
    audit = criteria.criterion("audit", False, "not judged yet: the final audit reads this comparison")
    final = {"decision": "pending", "kind": "pending: the final gate has not been signed"}
    return criteria.with_criteria(doc, [*judged, audit], final, None)


def compare_step(ctx: StepContext) -> dict[str, Any]:
    """Builtin step: write ``<session>/report/comparison.{json,md}`` (and a copy in the step's artifacts)."""
    params = parse_params(CompareParams, ctx.params)
    doc = with_pending_criteria(build_comparison(params, ctx.resolve, ctx.session_dir))
    written = write_outputs(doc, render_markdown(doc), [ctx.resolve(params.out), ctx.artifacts_dir], "comparison")
    ctx.log("comparison written to " + ", ".join(str(p) for p in written[:2]))
    if doc["status"] == "refused":
        ctx.emit("comparison", status="refused", reasons=doc["refusal"])
        raise StepFailed("refused to compare: " + "; ".join(doc["refusal"]))
    summary = {
        "status": doc["status"],
        "pairs": doc["pairs"]["count"],
        "better": [d["metric"] for d in doc["deltas"] if d["direction"] == "better"],
        "worse": [d["metric"] for d in doc["deltas"] if d["direction"] == "worse"],
        "beyond_noise": [d["metric"] for d in doc["deltas"] if d["beyond_noise"]],
        "flips": {k: len(v) for k, v in doc["flips"].items()},
        "evidence_complete": doc["evidence"]["complete"],
        "residual_blockers": doc["residual_blockers"],
        "comparison": session_relative(written[0], ctx.session_dir),
    }
    ctx.emit("comparison", **{k: v for k, v in summary.items() if k != "residual_blockers"})
    return summary
