"""The metrics of an evaluation, recomputed from a dirty trace alone (``compute_metrics``), and their models.

Every number in a report is computed here from the trace file, so anyone can recompute it, and so a comparison of
two runs (``compute_metrics`` on each) measures both the same way. Keys are camelCase, as the plan spells
``ticksObserved``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from pipeline.traces.growth import DEFAULT_WARMUP_TICKS, GrowthFit, context_size

MODEL_ACTORS = frozenset({"model", "repair"})
MAX_DEATH_RECORDS = 200


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class LatencyStats(Camel):
    """Model-call latency in seconds (``latency_s`` of every tick that has one; the request that answered,
    retries excluded). Percentiles interpolate linearly between closest ranks; 6 decimals."""

    count: int = Field(default=0, description="ticks with a numeric latency_s")
    p50: float | None = None
    p95: float | None = None
    mean: float | None = None
    max: float | None = None


class MttrStats(Camel):
    """Mean time to recovery over recovered chains: from the chain's first tick to its recovered tick, in tick
    numbers and in seconds of ``ts``; 6 decimals."""

    samples: int = Field(default=0, description="recovered chains")
    ticks: float | None = Field(default=None, description="mean of (recovered tick - first tick)")
    seconds: float | None = Field(default=None, description="mean of (recovered ts - first ts), seconds")
    ticks_p50: float | None = None
    seconds_p50: float | None = None


class ContextProfile(Camel):
    """Prompt size per tick, in characters (``context_chars`` of ticks that had a prompt, else the summed
    ``content`` of their ``context`` messages; 0 is no sample)."""

    samples: int = Field(default=0, description="ticks with a prompt size > 0")
    max_chars: int = Field(default=0, description="largest prompt, chars")
    mean_chars: float | None = Field(default=None, description="mean prompt size, chars, rounded to 2 decimals")
    p95_chars: float | None = Field(default=None, description="95th percentile (linear), chars, 2 decimals")
    growth_per_tick: float | None = Field(
        default=None,
        description="within-episode least-squares slope of prompt size on tick number (one intercept per episode), "
        "chars per tick, over the ticks at or after each episode's warm-up; 4 decimals; null without two such ticks "
        "in any episode",
    )
    growth_per_tick_all: float | None = Field(default=None, description="the same slope over all ticks (no warm-up)")
    warmup_ticks: int | None = Field(
        default=None,
        description="the gate's warm-up for every episode; null: each episode's context_window + 1, else "
        f"{DEFAULT_WARMUP_TICKS}",
    )
    max_prompt_tokens: int | None = Field(default=None, description="largest prompt_tokens of any tick")
    per_tick_mean: list[float] = Field(
        default_factory=list, description="mean chars at each tick number that has samples, ascending, 1 decimal"
    )


class Recoveries(Camel):
    """Recovery chains (ticks sharing a ``chain_id``); a chain ends on its ``recovered`` or ``death`` tick."""

    chains: int = Field(default=0, description="distinct chain_id values on ticks with a chain_role")
    recovered: int = Field(default=0, description="chains whose last role is 'recovered'")
    died: int = Field(default=0, description="chains whose last role is 'death'")
    unresolved: int = Field(default=0, description="chains that neither recovered nor died")
    by_mechanism: dict[str, int] = Field(
        default_factory=dict, description="recovered chains by the 'recovery' of their recovered tick ('unknown')"
    )


class TrapStats(Camel):
    total: int = Field(default=0, description="ticks on which a trap fired (ticks with a non-empty 'trap')")
    by_kind: dict[str, int] = Field(default_factory=dict, description="those ticks by trap")
    armed_episodes: dict[str, int] = Field(
        default_factory=dict, description="episodes that armed each trap (episode_start 'traps')"
    )


class DeathRecord(Camel):
    episode: str
    tick: int
    actor: str | None = None
    error_class: str | None = None
    trap: str | None = None
    chain_id: str | None = None
    reason: str | None = None
    line: int


class EvalMetrics(Camel):
    """What a trace shows, computed from the trace alone (definitions: docs/trace-format.md)."""

    ticks_observed: int = Field(default=0, description="records with kind 'tick'")
    episodes: int = Field(default=0, description="records with kind 'episode_start'")
    episodes_by_outcome: dict[str, int] = Field(default_factory=dict, description="episode_end records by outcome")
    solved: int = Field(default=0, description="episode_end records with solved true")
    deaths: int = Field(default=0, description="ticks with chain_role 'death' or outcome 'death'")
    death_records: list[DeathRecord] = Field(default_factory=list, description=f"the first {MAX_DEATH_RECORDS} deaths")
    recoveries: Recoveries = Field(default_factory=Recoveries)
    trap_interactions: TrapStats = Field(default_factory=TrapStats)
    latency: LatencyStats = Field(default_factory=LatencyStats)
    model_turns: int = Field(default=0, description="ticks where the model was called (actor model or repair)")
    model_replies: int = Field(default=0, description="model turns with a raw_output (not null)")
    schema_violations: int = Field(
        default=0, description="ticks with error_class 'SchemaViolation' or a non-empty schema_error"
    )
    schema_violation_rate: float | None = Field(
        default=None, description="schemaViolations / modelReplies, 6 decimals; null without replies"
    )
    error_classes: dict[str, int] = Field(default_factory=dict, description="ticks by non-empty error_class")
    actors: dict[str, int] = Field(default_factory=dict, description="ticks by actor (default 'model')")
    thrash_ticks: int = Field(default=0, description="ticks with thrash true")
    mttr: MttrStats = Field(default_factory=MttrStats)
    context_profile: ContextProfile = Field(default_factory=ContextProfile)
    invalid_lines: int = Field(default=0, description="lines that are not JSON objects with a known kind")


# -- statistics helpers ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * min(100.0, max(0.0, q)) / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return float(data[lo])
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


# -- reading ----------------------------------------------------------------------------------------------------


def iter_trace(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, decoded object or None when the line is not a JSON object); blank lines skipped."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                yield number, None
                continue
            yield number, obj if isinstance(obj, dict) else None


@dataclass
class _Chain:
    episode: str
    first_tick: int
    first_ts: float
    first_role: str | None
    ticks: list[int] = field(default_factory=list)
    end_role: str | None = None
    end_tick: int | None = None
    end_ts: float | None = None
    mechanism: str | None = None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def compute_metrics(trace_path: Path, warmup_ticks: int | None = None) -> EvalMetrics:
    """Every metric of a report, from the trace file alone (one streaming pass)."""
    m = EvalMetrics()
    latencies: list[float] = []
    contexts: dict[str, list[tuple[int, int]]] = defaultdict(list)
    growth = GrowthFit(warmup_ticks)
    growth_all = GrowthFit(0)
    by_tick: dict[int, list[int]] = defaultdict(list)
    chains: dict[str, _Chain] = {}
    errors: Counter[str] = Counter()
    actors: Counter[str] = Counter()
    traps: Counter[str] = Counter()
    armed: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    max_tokens: int | None = None
    for number, rec in iter_trace(trace_path):
        kind = rec.get("kind") if rec else None
        if rec is None or kind not in ("episode_start", "tick", "episode_end"):
            m.invalid_lines += 1
            continue
        key = (str(rec.get("run_id") or ""), str(rec.get("episode")))
        if kind == "episode_start":
            m.episodes += 1
            armed.update(str(t) for t in rec.get("traps") or [])
            growth.start(key, rec.get("context_window"))
            growth_all.start(key)
            continue
        if kind == "episode_end":
            outcomes[str(rec.get("outcome"))] += 1
            m.solved += bool(rec.get("solved"))
            growth.close(key)
            growth_all.close(key)
            continue
        m.ticks_observed += 1
        episode = str(rec.get("episode"))
        raw_tick = rec.get("tick")
        tick: int = raw_tick if isinstance(raw_tick, int) else -1
        ts = _num(rec.get("ts")) or 0.0
        actor = str(rec.get("actor", "model"))
        actors[actor] += 1
        if actor in MODEL_ACTORS:
            m.model_turns += 1
            if rec.get("raw_output") is not None:
                m.model_replies += 1
        latency = _num(rec.get("latency_s"))
        if latency is not None:
            latencies.append(latency)
        error_class = rec.get("error_class")
        if error_class:
            errors[str(error_class)] += 1
        if error_class == "SchemaViolation" or rec.get("schema_error"):
            m.schema_violations += 1
        if rec.get("trap"):
            traps[str(rec["trap"])] += 1
        if rec.get("thrash") is True:
            m.thrash_ticks += 1
        chars = context_size(rec)
        if chars is not None and chars > 0:
            contexts[episode].append((tick, chars))
            by_tick[tick].append(chars)
            if tick >= 0:
                growth.add(key, tick, chars)
                growth_all.add(key, tick, chars)
        tokens = rec.get("prompt_tokens")
        if isinstance(tokens, int):
            max_tokens = tokens if max_tokens is None else max(max_tokens, tokens)
        role = rec.get("chain_role")
        chain_id = rec.get("chain_id")
        if role == "death" or rec.get("outcome") == "death":
            m.deaths += 1
            if len(m.death_records) < MAX_DEATH_RECORDS:
                m.death_records.append(
                    DeathRecord(
                        episode=episode,
                        tick=tick,
                        actor=actor,
                        error_class=str(error_class) if error_class else None,
                        trap=str(rec["trap"]) if rec.get("trap") else None,
                        chain_id=str(chain_id) if chain_id else None,
                        reason=str(rec["death_reason"]) if rec.get("death_reason") else None,
                        line=number,
                    )
                )
        if chain_id and role:
            chain = chains.get(str(chain_id))
            if chain is None:
                chain = chains[str(chain_id)] = _Chain(episode, tick, ts, str(role))
            chain.ticks.append(tick)
            if role in ("recovered", "death"):
                chain.end_role, chain.end_tick, chain.end_ts = str(role), tick, ts
                chain.mechanism = str(rec.get("recovery") or "unknown") if role == "recovered" else None
    m.episodes_by_outcome = dict(sorted(outcomes.items()))
    m.error_classes = dict(sorted(errors.items()))
    m.actors = dict(sorted(actors.items()))
    m.trap_interactions = TrapStats(
        total=sum(traps.values()), by_kind=dict(sorted(traps.items())), armed_episodes=dict(sorted(armed.items()))
    )
    m.latency = LatencyStats(
        count=len(latencies),
        p50=_round(percentile(latencies, 50)),
        p95=_round(percentile(latencies, 95)),
        mean=_round(mean(latencies)),
        max=_round(max(latencies)) if latencies else None,
    )
    m.schema_violation_rate = _round(m.schema_violations / m.model_replies) if m.model_replies else None
    mechanisms: Counter[str] = Counter()
    mttr_ticks: list[float] = []
    mttr_seconds: list[float] = []
    rec_stats = Recoveries(chains=len(chains))
    for chain in chains.values():
        if chain.end_role == "recovered":
            rec_stats.recovered += 1
            mechanisms[chain.mechanism or "unknown"] += 1
            assert chain.end_tick is not None and chain.end_ts is not None
            mttr_ticks.append(float(chain.end_tick - chain.first_tick))
            mttr_seconds.append(chain.end_ts - chain.first_ts)
        elif chain.end_role == "death":
            rec_stats.died += 1
        else:
            rec_stats.unresolved += 1
    rec_stats.by_mechanism = dict(sorted(mechanisms.items()))
    m.recoveries = rec_stats
    m.mttr = MttrStats(
        samples=len(mttr_ticks),
        ticks=_round(mean(mttr_ticks)),
        seconds=_round(mean(mttr_seconds)),
        ticks_p50=_round(percentile(mttr_ticks, 50)),
        seconds_p50=_round(percentile(mttr_seconds, 50)),
    )
    all_chars = [c for points in contexts.values() for _, c in points]
    m.context_profile = ContextProfile(
        samples=len(all_chars),
        max_chars=max(all_chars) if all_chars else 0,
        mean_chars=_round(mean(all_chars), 2),
        p95_chars=_round(percentile(all_chars, 95), 2),
        growth_per_tick=growth.growth(),
        growth_per_tick_all=growth_all.growth(),
        warmup_ticks=warmup_ticks,
        max_prompt_tokens=max_tokens,
        per_tick_mean=[round(sum(v) / len(v), 1) for _, v in sorted(by_tick.items()) if v],
    )
    return m
