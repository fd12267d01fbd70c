"""Baseline vs fine-tuned: the comparison report (``comparison.json`` + ``comparison.md``) of plan Stage E.

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

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.jobs.context import StepContext, StepFailed, parse_params
from pipeline.report import criteria
from pipeline.report.eval_report import EvalMetrics, compute_metrics, file_sha256, iter_trace, percentile
from pipeline.report.paths import relative_text, session_relative

COMPARISON_SCHEMA = "phasef.comparison/1"
MODEL_ACTORS = frozenset({"model", "repair"})
Better = Literal["lower", "higher"]
Direction = Literal["better", "worse", "same", "n/a"]


# -- params -------------------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunRef(_Strict):
    """One evaluated run: its ``eval_report.json`` (the trace is found through the report unless given)."""

    report: str
    trace: str | None = None
    name: str | None = Field(default=None, description="label in tables; default: the report's model id")


class NoiseParams(_Strict):
    resamples: int = Field(default=2000, ge=100, le=100_000)
    seed: int = 0
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    min_pairs: int = Field(default=5, ge=2, description="fewer paired episodes: no difference is called real")


class CompareParams(_Strict):
    baseline: RunRef
    finetuned: RunRef
    noise: NoiseParams = Field(default_factory=NoiseParams)
    min_ticks: int = Field(default=100, ge=0, description="fewer ticks observed in a run is a residual blocker")
    out: str = Field(default="report", description="folder for comparison.json/.md, session-relative")


# -- per-episode figures --------------------------------------------------------------------------------------------
@dataclass
class _ChainTrack:
    first_tick: int
    first_ts: float
    ticks: list[int] = field(default_factory=list)
    end_role: str | None = None
    end_tick: int | None = None
    end_ts: float | None = None


@dataclass
class EpisodeStats:
    """One episode's share of every compared metric (definitions as in ``eval_report.compute_metrics``)."""

    episode: str
    task_id: str | None = None
    seed: int | None = None
    ticks: int = 0
    model_replies: int = 0
    schema_violations: int = 0
    latencies: list[float] = field(default_factory=list)
    contexts: list[float] = field(default_factory=list)
    deaths: int = 0
    solved: bool = False
    outcome: str | None = None
    chains: dict[str, _ChainTrack] = field(default_factory=dict)

    @property
    def chain_count(self) -> int:
        return len(self.chains)

    @property
    def recovered(self) -> int:
        return sum(c.end_role == "recovered" for c in self.chains.values())

    @property
    def first_try(self) -> int:
        """Chains recovered by the first tick after the failure (reflex quality)."""
        return sum(c.end_role == "recovered" and len(c.ticks) == 2 for c in self.chains.values())

    def recovery_ticks(self) -> list[float]:
        return [
            float(c.end_tick - c.first_tick)
            for c in self.chains.values()
            if c.end_role == "recovered" and c.end_tick is not None
        ]

    def recovery_seconds(self) -> list[float]:
        return [
            c.end_ts - c.first_ts for c in self.chains.values() if c.end_role == "recovered" and c.end_ts is not None
        ]

    @property
    def died(self) -> bool:
        return self.deaths > 0 or self.outcome == "death"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def episode_stats(trace: Path) -> list[EpisodeStats]:
    """Split a canonical trace into per-episode figures, in order of first appearance."""
    episodes: dict[str, EpisodeStats] = {}

    def get(name: str) -> EpisodeStats:
        if name not in episodes:
            episodes[name] = EpisodeStats(name)
        return episodes[name]

    for _, rec in iter_trace(trace):
        kind = rec.get("kind") if rec else None
        if rec is None or kind not in ("episode_start", "tick", "episode_end"):
            continue
        ep = get(str(rec.get("episode")))
        if rec.get("task_id") is not None:
            ep.task_id = str(rec["task_id"])
        if kind == "episode_start":
            seed = rec.get("seed")
            ep.seed = seed if isinstance(seed, int) else None
            continue
        if kind == "episode_end":
            ep.solved = bool(rec.get("solved"))
            ep.outcome = str(rec.get("outcome"))
            continue
        ep.ticks += 1
        if str(rec.get("actor", "model")) in MODEL_ACTORS and rec.get("raw_output") is not None:
            ep.model_replies += 1
        latency = _num(rec.get("latency_s"))
        if latency is not None:
            ep.latencies.append(latency)
        if rec.get("error_class") == "SchemaViolation" or rec.get("schema_error"):
            ep.schema_violations += 1
        chars = rec.get("context_chars")
        if isinstance(chars, int) and chars > 0:
            ep.contexts.append(float(chars))
        role, chain_id = rec.get("chain_role"), rec.get("chain_id")
        if role == "death" or rec.get("outcome") == "death":
            ep.deaths += 1
        if chain_id and role:
            raw_tick = rec.get("tick")
            tick = raw_tick if isinstance(raw_tick, int) else -1
            ts = _num(rec.get("ts")) or 0.0
            chain = ep.chains.setdefault(str(chain_id), _ChainTrack(tick, ts))
            chain.ticks.append(tick)
            if role in ("recovered", "death"):
                chain.end_role, chain.end_tick, chain.end_ts = str(role), tick, ts
    return list(episodes.values())


# -- metrics ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """How one metric is made from episodes: a ratio of sums, a percentile of pooled values, or a sum."""

    key: str
    label: str
    unit: str
    better: Better
    kind: Literal["ratio", "pooled", "sum"]
    num: Callable[[EpisodeStats], float] | None = None
    den: Callable[[EpisodeStats], float] | None = None
    values: Callable[[EpisodeStats], list[float]] | None = None
    q: float = 50.0
    noise_testable: bool = True
    """False for an extreme (a maximum): the bootstrap cannot bound it, so no difference is called real."""
    blocking: bool = True
    """Whether being worse beyond noise is a residual blocker (context size and tick count are gated elsewhere)."""

    def episode_value(self, ep: EpisodeStats) -> float | None:
        """This metric for one episode alone (the sign test's unit), or None where undefined."""
        if self.kind == "pooled":
            assert self.values is not None
            return percentile(self.values(ep), self.q)
        assert self.num is not None
        if self.kind == "sum":
            return self.num(ep)
        assert self.den is not None
        den = self.den(ep)
        return self.num(ep) / den if den else None

    def aggregate(self, eps: Sequence[EpisodeStats]) -> float | None:
        if self.kind == "pooled":
            assert self.values is not None
            return percentile([v for ep in eps for v in self.values(ep)], self.q)
        assert self.num is not None
        total = sum(self.num(ep) for ep in eps)
        if self.kind == "sum":
            return total
        assert self.den is not None
        den = sum(self.den(ep) for ep in eps)
        return total / den if den else None


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("latency_p50_s", "latency p50", "s", "lower", "pooled", values=lambda e: e.latencies, q=50),
    MetricSpec("latency_p95_s", "latency p95", "s", "lower", "pooled", values=lambda e: e.latencies, q=95),
    MetricSpec(
        "schema_violation_rate",
        "schema-violation rate",
        "per model reply",
        "lower",
        "ratio",
        num=lambda e: e.schema_violations,
        den=lambda e: e.model_replies,
    ),
    MetricSpec(
        "mttr_s",
        "MTTR",
        "s",
        "lower",
        "ratio",
        num=lambda e: sum(e.recovery_seconds()),
        den=lambda e: len(e.recovery_seconds()),
    ),
    MetricSpec(
        "mttr_ticks",
        "MTTR",
        "ticks",
        "lower",
        "ratio",
        num=lambda e: sum(e.recovery_ticks()),
        den=lambda e: len(e.recovery_ticks()),
    ),
    MetricSpec(
        "recovery_rate",
        "recovery rate",
        "chains recovered",
        "higher",
        "ratio",
        num=lambda e: e.recovered,
        den=lambda e: e.chain_count,
    ),
    MetricSpec(
        "reflex_quality",
        "reflex quality",
        "chains recovered at the first attempt",
        "higher",
        "ratio",
        num=lambda e: e.first_try,
        den=lambda e: e.chain_count,
    ),
    MetricSpec("deaths", "deaths", "death ticks", "lower", "sum", num=lambda e: e.deaths),
    MetricSpec(
        "solved_rate", "solved", "share of episodes", "higher", "ratio", num=lambda e: e.solved, den=lambda e: 1
    ),
    MetricSpec("ticks_observed", "ticks observed", "ticks", "higher", "sum", num=lambda e: e.ticks, blocking=False),
    MetricSpec(
        "context_p95_chars",
        "context p95",
        "chars",
        "lower",
        "pooled",
        values=lambda e: e.contexts,
        q=95,
        blocking=False,
    ),
    MetricSpec(
        "context_max_chars",
        "context max",
        "chars",
        "lower",
        "pooled",
        values=lambda e: e.contexts,
        q=100,
        noise_testable=False,
        blocking=False,
    ),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}


def headline(m: EvalMetrics) -> dict[str, float | None]:
    """The compared metrics of a run, from ``eval_report.compute_metrics`` (reflex quality is added by the caller)."""
    rec = m.recoveries
    return {
        "latency_p50_s": m.latency.p50,
        "latency_p95_s": m.latency.p95,
        "schema_violation_rate": m.schema_violation_rate,
        "mttr_s": m.mttr.seconds,
        "mttr_ticks": m.mttr.ticks,
        "recovery_rate": rec.recovered / rec.chains if rec.chains else None,
        "reflex_quality": None,
        "deaths": float(m.deaths),
        "solved_rate": m.solved / m.episodes if m.episodes else None,
        "ticks_observed": float(m.ticks_observed),
        "context_p95_chars": m.context_profile.p95_chars,
        "context_max_chars": float(m.context_profile.max_chars) if m.context_profile.samples else None,
    }


# -- the paired noise test -----------------------------------------------------------------------------------------
def pairing_key(ep: EpisodeStats) -> str:
    return f"{ep.task_id}#seed={ep.seed}" if ep.task_id is not None else f"episode={ep.episode}"


def pair_episodes(
    base: Sequence[EpisodeStats], fine: Sequence[EpisodeStats]
) -> tuple[list[tuple[EpisodeStats, EpisodeStats]], list[str], list[str]]:
    """Pairs by task (and seed; repeats by order), and the episodes of each side left without a partner."""

    def keyed(eps: Sequence[EpisodeStats]) -> dict[str, EpisodeStats]:
        seen: dict[str, int] = {}
        out: dict[str, EpisodeStats] = {}
        for ep in eps:
            k = pairing_key(ep)
            seen[k] = seen.get(k, 0) + 1
            out[f"{k}#{seen[k]}"] = ep
        return out

    b, f = keyed(base), keyed(fine)
    pairs = [(b[k], f[k]) for k in b if k in f]
    return pairs, [b[k].episode for k in b if k not in f], [f[k].episode for k in f if k not in b]


def sign_test(diffs: Sequence[float]) -> dict[str, Any]:
    """Exact two-sided sign test over non-zero paired differences."""
    pos = sum(d > 0 for d in diffs)
    neg = sum(d < 0 for d in diffs)
    n = pos + neg
    if n == 0:
        return {"positive": 0, "negative": 0, "ties": len(diffs), "p_value": 1.0}
    k = min(pos, neg)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return {"positive": pos, "negative": neg, "ties": len(diffs) - n, "p_value": min(1.0, 2 * tail)}


def bootstrap_delta(
    spec: MetricSpec, pairs: Sequence[tuple[EpisodeStats, EpisodeStats]], noise: NoiseParams
) -> tuple[float, float] | None:
    """Percentile interval of (fine-tuned - baseline) over resampled episode pairs; None when undefined."""
    n = len(pairs)
    if n == 0:
        return None
    rng = np.random.default_rng(noise.seed)
    idx = rng.integers(0, n, size=(noise.resamples, n))
    base = [p[0] for p in pairs]
    fine = [p[1] for p in pairs]
    if spec.kind == "pooled":
        assert spec.values is not None
        getter = spec.values
        b_vals = [np.asarray(getter(e), dtype=float) for e in base]
        f_vals = [np.asarray(getter(e), dtype=float) for e in fine]
        deltas = np.full(noise.resamples, np.nan)
        for r in range(noise.resamples):
            bs = np.concatenate([b_vals[i] for i in idx[r]])
            fs = np.concatenate([f_vals[i] for i in idx[r]])
            if bs.size and fs.size:
                deltas[r] = np.percentile(fs, spec.q) - np.percentile(bs, spec.q)
    else:
        assert spec.num is not None
        num_fn = spec.num
        b_num = np.array([num_fn(e) for e in base], dtype=float)[idx].sum(axis=1)
        f_num = np.array([num_fn(e) for e in fine], dtype=float)[idx].sum(axis=1)
        if spec.kind == "sum":
            deltas = f_num - b_num
        else:
            assert spec.den is not None
            den_fn = spec.den
            b_den = np.array([den_fn(e) for e in base], dtype=float)[idx].sum(axis=1)
            f_den = np.array([den_fn(e) for e in fine], dtype=float)[idx].sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                deltas = np.where((b_den > 0) & (f_den > 0), f_num / f_den - b_num / b_den, np.nan)
    valid = deltas[~np.isnan(deltas)]
    if valid.size < noise.resamples / 2:
        return None
    tail = (1 - noise.confidence) / 2 * 100
    lo, hi = np.percentile(valid, [tail, 100 - tail])
    return float(lo), float(hi)


def direction(spec: MetricSpec, base: float | None, fine: float | None) -> Direction:
    if base is None or fine is None:
        return "n/a"
    delta = fine - base
    if abs(delta) <= 1e-9 * max(abs(base), abs(fine), 1.0):
        return "same"
    improved = delta < 0 if spec.better == "lower" else delta > 0
    return "better" if improved else "worse"


# -- reading a run ----------------------------------------------------------------------------------------------
class RunProblem(Exception):
    """A run cannot be compared (unreadable report, missing trace, trace changed since its report)."""


@dataclass
class RunData:
    role: str
    name: str
    report_path: Path
    report: dict[str, Any]
    trace_path: Path
    trace_sha256: str
    metrics: EvalMetrics
    episodes: list[EpisodeStats]

    @property
    def task_set_hash(self) -> str | None:
        return _hash_field(self.report, "taskSetHash", "task_set_hash")

    @property
    def gate_config_hash(self) -> str | None:
        return _hash_field(self.report, "gateConfigHash", "gate_config_hash")

    def values(self) -> dict[str, float | None]:
        values = headline(self.metrics)
        values["reflex_quality"] = METRIC_BY_KEY["reflex_quality"].aggregate(self.episodes)
        return values

    def evidence(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "death_traces": m.deaths,
            "death_records": len(m.death_records),
            "recovery_chains": m.recoveries.chains,
            "recovered_chains": m.recoveries.recovered,
            "trap_interactions": m.trap_interactions.total,
            "context_profile": m.context_profile.samples > 0,
            "context_samples": m.context_profile.samples,
            "context_growth_per_tick": m.context_profile.growth_per_tick,
        }

    def summary(self, session_dir: Path | None = None) -> dict[str, Any]:
        """The run as reports list it; files inside ``session_dir`` named relative to it."""
        return {
            "name": self.name,
            "model": self.report.get("model", {}),
            "report": session_relative(self.report_path, session_dir),
            "report_sha256": file_sha256(self.report_path),
            "verdict": self.report.get("verdict"),
            "reasons": self.report.get("reasons", []),
            "trace": session_relative(self.trace_path, session_dir),
            "trace_sha256": self.trace_sha256,
            "taskSetHash": self.task_set_hash,
            "gateConfigHash": self.gate_config_hash,
            "episodes": len(self.episodes),
            "invalid_lines": self.metrics.invalid_lines,
            "metrics": self.values(),
            "evidence": self.evidence(),
        }


def _hash_field(report: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = report.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunProblem(f"{path}: no such report") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunProblem(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RunProblem(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise RunProblem(f"{path}: expected a JSON object")
    return data


def trace_of(report: dict[str, Any], report_path: Path, explicit: Path | None) -> tuple[Path, str | None]:
    """The run's trace and the sha256 its report recorded (None when the report records none)."""
    ref = report.get("trace")
    recorded = ref.get("sha256") if isinstance(ref, dict) else None
    if explicit is not None:
        return explicit, recorded if isinstance(recorded, str) else None
    raw = ref.get("path") if isinstance(ref, dict) else ref if isinstance(ref, str) else None
    if not isinstance(raw, str) or not raw:
        raise RunProblem(f"{report_path}: field 'trace.path' missing; give the trace in the step's params")
    path = Path(raw)
    if not path.is_absolute():
        beside = report_path.parent / path
        path = beside if beside.exists() else path
    return path, recorded if isinstance(recorded, str) else None


def load_run(role: str, ref: RunRef, resolve: Callable[[str], Path]) -> RunData:
    report_path = resolve(ref.report)
    report = read_report(report_path)
    trace, recorded = trace_of(report, report_path, resolve(ref.trace) if ref.trace else None)
    if not trace.is_file():
        raise RunProblem(f"{role}: trace {trace} does not exist")
    sha = file_sha256(trace)
    if recorded is not None and recorded != sha:
        raise RunProblem(
            f"{role}: trace {trace} changed since {report_path} was written "
            f"(sha256 {sha[:12]}… now, {recorded[:12]}… in the report)"
        )
    model = report.get("model")
    label = model.get("label") or model.get("id") if isinstance(model, dict) else None
    name = ref.name or (str(label) if label else role)
    return RunData(role, name, report_path, report, trace, sha, compute_metrics(trace), episode_stats(trace))


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


# -- output ----------------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e12:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def render_markdown(doc: dict[str, Any]) -> str:
    base, fine = doc["baseline"], doc["finetuned"]
    lines = ["# Baseline vs fine-tuned", ""]
    if doc.get("pass_criteria") is not None:
        lines += criteria.render_markdown(doc)
    lines += [
        f"- baseline: **{base.get('name')}** — `{base.get('report')}`",
        f"- fine-tuned: **{fine.get('name')}** — `{fine.get('report')}`",
        f"- status: **{doc['status']}**",
        "",
    ]
    if doc["status"] == "refused":
        lines += ["## Refused", "", "The runs were not judged alike, so no delta is shown:", ""]
        lines += [f"- {r}" for r in doc["refusal"]]
        return "\n".join(lines) + "\n"
    noise = doc["noise"]
    lines += [
        f"Task set `{base['taskSetHash'][:12]}…`, gate config `{base['gateConfigHash'][:12]}…` "
        "(identical in both runs). "
        f"{doc['pairs']['count']} episode pairs; noise: paired bootstrap, {noise['resamples']} resamples, "
        f"seed {noise['seed']}, {noise['confidence']:.0%} interval.",
        "",
        "## Delta table",
        "",
        "| metric | unit | baseline | fine-tuned | delta | direction | beyond noise | interval | sign test p |",
        "|---|---|---:|---:|---:|---|---|---|---:|",
    ]
    for d in doc["deltas"]:
        ci = d["ci"]
        interval = f"{ci[0]:+.3g} .. {ci[1]:+.3g}" if ci else "n/a"
        delta = "n/a" if d["delta"] is None else f"{d['delta']:+.4g}"
        beyond = "yes" if d["beyond_noise"] else "no"
        lines.append(
            f"| {d['label']} | {d['unit']} | {_fmt(d['baseline'])} | {_fmt(d['finetuned'])} | {delta} | "
            f"{d['direction']} | {beyond} | {interval} | {d['sign_test']['p_value']:.3g} |"
        )
    flips = doc["flips"]
    lines += ["", "## Flipped episodes", ""]
    any_flip = False
    for kind, title in (
        ("solved", "unsolved → solved"),
        ("unsolved", "solved → unsolved"),
        ("survived", "died → survived"),
        ("died", "survived → died"),
    ):
        for f in flips[kind]:
            any_flip = True
            lines.append(f"- {title}: `{f['task']}` ({f['baseline_episode']} → {f['finetuned_episode']})")
    if not any_flip:
        lines.append("- none")
    ev = doc["evidence"]
    lines += ["", "## Evidence completeness", ""]
    lines.append(f"- complete: **{'yes' if ev['complete'] else 'no'}**" + "".join(f"; {m}" for m in ev["missing"]))
    for role in ("baseline", "finetuned"):
        e = ev[role]
        lines.append(
            f"- {role}: {e['death_traces']} death trace(s), {e['recovered_chains']}/{e['recovery_chains']} chains "
            f"recovered, {e['trap_interactions']} trap interaction(s), context profile "
            f"{'present' if e['context_profile'] else 'missing'} ({e['context_samples']} samples, growth "
            f"{_fmt(e['context_growth_per_tick'])} chars/tick)"
        )
    lines += ["", "## Residual blockers", ""]
    lines += [f"- {b}" for b in doc["residual_blockers"]] or ["- none"]
    if doc["self_check"]:
        lines += ["", "## Metric self-check disagreements", ""] + [f"- {p}" for p in doc["self_check"]]
    return "\n".join(lines) + "\n"


def write_outputs(doc: dict[str, Any], markdown: str, folders: Sequence[Path], stem: str) -> list[Path]:
    """``<stem>.json`` and ``<stem>.md`` into every folder (atomically); the paths written, JSON first."""
    from pipeline.fsio import atomic_write_text

    text_json = json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
    written = []
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".json", text_json), (".md", markdown)):
            path = folder / f"{stem}{suffix}"
            atomic_write_text(path, text)
            written.append(path)
    return written


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
