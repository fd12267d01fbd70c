"""The statistics of a comparison: each episode's share of every metric, the metrics, and the paired noise test.

Each trace is split into ``EpisodeStats`` with the definitions of ``eval_report.compute_metrics``; a ``MetricSpec``
makes one metric from episodes (a ratio of sums, a percentile of pooled values, or a sum). Episodes are paired by
task across the runs; a paired bootstrap bounds the difference of each metric and an exact sign test is reported
next to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.report.eval_metrics import MODEL_ACTORS, EvalMetrics, iter_trace, percentile

Better = Literal["lower", "higher"]
Direction = Literal["better", "worse", "same", "n/a"]


class NoiseParams(BaseModel):
    """The paired bootstrap's settings (``params.noise`` of a comparison)."""

    model_config = ConfigDict(extra="forbid")
    resamples: int = Field(default=2000, ge=100, le=100_000)
    seed: int = 0
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    min_pairs: int = Field(default=5, ge=2, description="fewer paired episodes: no difference is called real")


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


def _mean(key: str, label: str, unit: str, values: Callable[[EpisodeStats], list[float]]) -> MetricSpec:
    """The mean of values pooled over the episodes (their sum over their count), lower is better."""
    return MetricSpec(key, label, unit, "lower", "ratio", num=lambda e: sum(values(e)), den=lambda e: len(values(e)))


def _chain_share(key: str, label: str, unit: str, chains: Callable[[EpisodeStats], float]) -> MetricSpec:
    """A share of the failure chains, higher is better."""
    return MetricSpec(key, label, unit, "higher", "ratio", num=chains, den=lambda e: e.chain_count)


def _context(key: str, label: str, q: float, noise_testable: bool = True) -> MetricSpec:
    """A percentile of the context sizes, not a blocker (context size is gated elsewhere)."""
    return MetricSpec(
        key,
        label,
        "chars",
        "lower",
        "pooled",
        values=lambda e: e.contexts,
        q=q,
        noise_testable=noise_testable,
        blocking=False,
    )


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
    _mean("mttr_s", "MTTR", "s", EpisodeStats.recovery_seconds),
    _mean("mttr_ticks", "MTTR", "ticks", EpisodeStats.recovery_ticks),
    _chain_share("recovery_rate", "recovery rate", "chains recovered", lambda e: e.recovered),
    _chain_share("reflex_quality", "reflex quality", "chains recovered at the first attempt", lambda e: e.first_try),
    MetricSpec("deaths", "deaths", "death ticks", "lower", "sum", num=lambda e: e.deaths),
    MetricSpec(
        "solved_rate", "solved", "share of episodes", "higher", "ratio", num=lambda e: e.solved, den=lambda e: 1
    ),
    MetricSpec("ticks_observed", "ticks observed", "ticks", "higher", "sum", num=lambda e: e.ticks, blocking=False),
    _context("context_p95_chars", "context p95", 95),
    _context("context_max_chars", "context max", 100, noise_testable=False),
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
