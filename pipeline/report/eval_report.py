"""The evaluation report (``phasef.eval_report/1``): metrics recomputed from a dirty trace, protocol checks and gates.

Every number in a report is computed here from the trace file alone, so anyone can recompute it, and so a
comparison of two runs (``compute_metrics`` on each) measures both the same way. Reports carry the hash of their
task set and of their gate config: reports whose hashes differ were not judged alike and must not be compared.

A report PASSes only when every check passes: the protocol checks (the trace is schema-valid, episodes and chains
are well formed, the prompt stayed O(1) in ticks, no secret leaked into the trace), the evidence the plan demands
(a death trace, a recovered chain, a trap interaction, a context profile) and the gates (at least ``min_ticks``
ticks observed, the run not aborted). Keys are camelCase, as the plan spells ``ticksObserved``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from pipeline.fsio import atomic_write_text
from pipeline.traces.growth import DEFAULT_WARMUP_TICKS, GrowthFit, context_size
from pipeline.traces.schema import parse_record

REPORT_SCHEMA_VERSION = "phasef.eval_report/1"
MODEL_ACTORS = frozenset({"model", "repair"})
MAX_LISTED_ISSUES = 10
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


class CheckResult(Camel):
    name: str
    kind: Literal["protocol", "evidence", "gate"]
    passed: bool
    detail: str


class TraceRef(Camel):
    path: str
    sha256: str = Field(description="sha256 (hex) of the trace file's bytes, as read")
    records: int = Field(description="non-blank lines of the trace file")


class EvalReport(EvalMetrics):
    schema_: str = Field(default=REPORT_SCHEMA_VERSION, alias="schema")
    run_id: str
    created_at: str
    model: dict[str, Any] = Field(default_factory=dict, description="model id and endpoint (never a key)")
    target: dict[str, str] = Field(default_factory=dict, description="target packages and their versions")
    workload: dict[str, Any] = Field(default_factory=dict, description="seed, episodes, prompt and recovery settings")
    task_set_hash: str = Field(
        description="sha256 (hex) of the canonical JSON of the task set (statements, answers, checks, traps): "
        "the runner's; reports with different hashes ran different tasks"
    )
    gate_config_hash: str = Field(
        description="sha256 (hex) of the canonical JSON (sorted keys, no spaces) of 'gate': reports with different "
        "hashes were judged by different gates"
    )
    gate: dict[str, Any] = Field(description="the resolved gate this report was judged by")
    trace: TraceRef
    duration_s: float | None = None
    aborted: str | None = None
    protocol_checks: list[CheckResult]
    verdict: Literal["PASS", "FAIL"]
    reasons: list[str] = Field(default_factory=list, description="why the verdict is FAIL, one line per failed check")


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


# -- checks -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """Resolved gate settings (no defaults left open), the input of ``gate_config_hash``."""

    min_ticks: int
    context_budget_chars: int
    max_context_growth_per_tick: float
    context_warmup_ticks: int | None  # None: each episode's context_window + 1 (pipeline.traces.growth)
    require_evidence: bool

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Gate:
        """The gate of a report's ``gate`` object (camelCase keys)."""
        warmup = data.get("contextWarmupTicks")
        return cls(
            min_ticks=int(data["minTicks"]),
            context_budget_chars=int(data["contextBudgetChars"]),
            max_context_growth_per_tick=float(data["maxContextGrowthPerTick"]),
            context_warmup_ticks=None if warmup is None else int(warmup),
            require_evidence=bool(data["requireEvidence"]),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "minTicks": self.min_ticks,
            "contextBudgetChars": self.context_budget_chars,
            "maxContextGrowthPerTick": self.max_context_growth_per_tick,
            "contextWarmupTicks": self.context_warmup_ticks,
            "requireEvidence": self.require_evidence,
        }


def canonical_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def gate_config_hash(gate: Gate) -> str:
    return canonical_hash(gate.as_dict())


def _schema_check(trace_path: Path) -> tuple[CheckResult, int]:
    issues: list[str] = []
    count = 0
    records = 0
    for number, obj in iter_trace(trace_path):
        records += 1
        if obj is None:
            count += 1
            if len(issues) < MAX_LISTED_ISSUES:
                issues.append(f"{trace_path}:{number}: not a JSON object")
            continue
        try:
            parse_record(obj)
        except (ValidationError, ValueError) as exc:
            count += 1
            if len(issues) < MAX_LISTED_ISSUES:
                issues.append(f"{trace_path}:{number}: {_record_errors(exc)}")
    detail = (
        f"{records} records valid against phasef.dirty_trace/1"
        if not count
        else (f"{count} invalid record(s): " + "; ".join(issues))
    )
    return CheckResult(name="trace_schema", kind="protocol", passed=count == 0, detail=detail), records


def _record_errors(exc: Exception) -> str:
    """Every field error of one record, joined (a record often has more than one)."""
    if isinstance(exc, ValidationError):
        return ", ".join(f"field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in exc.errors())
    return str(exc)


@dataclass(frozen=True)
class TraceIssue:
    """One structural problem of a trace: the line, the field it is about and what is wrong."""

    line: int
    field: str
    message: str


def structure_issues(trace_path: Path) -> tuple[list[TraceIssue], list[TraceIssue]]:
    """Every episode issue and every chain issue of a trace (see ``_structure_checks``)."""
    episode_issues, chain_issues, _, _ = _structure_scan(trace_path)
    return episode_issues, chain_issues


def _structure_scan(trace_path: Path) -> tuple[list[TraceIssue], list[TraceIssue], int, int]:
    """Episode issues, chain issues, episodes started and chains seen, in one pass."""
    episode_issues: list[TraceIssue] = []
    chain_issues: list[TraceIssue] = []
    open_eps: dict[str, int] = {}
    started: set[str] = set()
    next_tick: dict[str, int] = {}
    chain_state: dict[str, tuple[str, str]] = {}  # chain -> (episode, last role)
    closed_chains: set[str] = set()
    last_chain: dict[str, str | None] = {}
    for number, rec in iter_trace(trace_path):
        if rec is None:
            continue
        kind, episode = rec.get("kind"), str(rec.get("episode"))
        where = number
        if kind == "episode_start":
            if episode in started:
                episode_issues.append(TraceIssue(where, "episode", f"episode {episode} starts twice"))
            started.add(episode)
            open_eps[episode] = number
            next_tick[episode] = 0
        elif kind == "tick":
            if episode not in open_eps:
                episode_issues.append(TraceIssue(where, "episode", f"tick outside an open episode {episode}"))
                continue
            tick = rec.get("tick")
            if tick != next_tick[episode]:
                episode_issues.append(TraceIssue(where, "tick", f"expected {next_tick[episode]}, got {tick}"))
            next_tick[episode] = (tick if isinstance(tick, int) else next_tick[episode]) + 1
            chain_id, role = rec.get("chain_id"), rec.get("chain_role")
            previous = last_chain.get(episode)
            if previous and previous != chain_id and previous not in closed_chains:
                chain_issues.append(
                    TraceIssue(where, "chain_id", f"chain {previous} interrupted before it recovered or died")
                )
                closed_chains.add(previous)
            last_chain[episode] = str(chain_id) if chain_id else None
            if not chain_id:
                if role:
                    chain_issues.append(TraceIssue(where, "chain_role", f"{role!r} without a chain_id"))
                elif rec.get("outcome") in ("error", "timeout", "death"):
                    chain_issues.append(TraceIssue(where, "chain_id", "failed tick outside any chain"))
                continue
            chain_id = str(chain_id)
            if chain_id in closed_chains:
                chain_issues.append(TraceIssue(where, "chain_id", f"chain {chain_id} continues after it ended"))
                continue
            if chain_id not in chain_state:
                if role not in ("failure", "death"):
                    chain_issues.append(
                        TraceIssue(where, "chain_role", f"chain {chain_id} starts with {role!r}, not 'failure'")
                    )
            elif chain_state[chain_id][0] != episode:
                chain_issues.append(TraceIssue(where, "chain_id", f"chain {chain_id} spans episodes"))
            chain_state[chain_id] = (episode, str(role))
            if role in ("recovered", "death"):
                closed_chains.add(chain_id)
        elif kind == "episode_end":
            if episode not in open_eps:
                episode_issues.append(TraceIssue(where, "episode", f"episode {episode} ends without a start"))
                continue
            del open_eps[episode]
            if rec.get("ticks") != next_tick.get(episode):
                episode_issues.append(
                    TraceIssue(where, "ticks", f"{rec.get('ticks')} but {next_tick.get(episode)} ticks were recorded")
                )
            closed_chains.update(c for c, (ep, _) in chain_state.items() if ep == episode)
    for episode, number in open_eps.items():
        episode_issues.append(TraceIssue(number, "episode", f"episode {episode} never ends"))
    return episode_issues, chain_issues, len(started), len(chain_state)


def _structure_checks(trace_path: Path) -> list[CheckResult]:
    """Episodes open and close once with contiguous ticks; chains start with a failure and end where they end."""
    episode_issues, chain_issues, started, chains = _structure_scan(trace_path)

    def text(issues: list[TraceIssue]) -> list[str]:
        return [f"{trace_path}:{i.line}: field '{i.field}': {i.message}" for i in issues]

    return [
        _issues_check("episodes_complete", "protocol", text(episode_issues), f"{started} episodes start and end once"),
        _issues_check("chains_well_formed", "protocol", text(chain_issues), f"{chains} chains well formed"),
    ]


def _issues_check(name: str, kind: Literal["protocol", "evidence", "gate"], issues: list[str], ok: str) -> CheckResult:
    if not issues:
        return CheckResult(name=name, kind=kind, passed=True, detail=ok)
    shown = "; ".join(issues[:MAX_LISTED_ISSUES])
    more = f" (+{len(issues) - MAX_LISTED_ISSUES} more)" if len(issues) > MAX_LISTED_ISSUES else ""
    return CheckResult(name=name, kind=kind, passed=False, detail=f"{len(issues)} issue(s): {shown}{more}")


def _context_check(profile: ContextProfile, gate: Gate) -> CheckResult:
    if profile.samples == 0:
        return CheckResult(name="context_bounded", kind="protocol", passed=False, detail="no prompt sizes recorded")
    problems = []
    if profile.max_chars > gate.context_budget_chars:
        problems.append(f"largest prompt {profile.max_chars} chars > budget {gate.context_budget_chars}")
    growth = profile.growth_per_tick
    if growth is not None and growth > gate.max_context_growth_per_tick:
        after = f"tick {gate.context_warmup_ticks}" if gate.context_warmup_ticks is not None else "the warm-up"
        problems.append(f"prompt grows {growth:.1f} chars/tick after {after} > {gate.max_context_growth_per_tick:g}")
    shown = f"{growth:.2f}" if growth is not None else "n/a"
    summary = f"max {profile.max_chars} chars (budget {gate.context_budget_chars}), growth {shown} chars/tick"
    if problems:
        return CheckResult(name="context_bounded", kind="protocol", passed=False, detail="; ".join(problems))
    return CheckResult(name="context_bounded", kind="protocol", passed=True, detail=f"O(1): {summary}")


def _secret_check(trace_path: Path, api_key_env: str | None) -> CheckResult:
    key = os.environ.get(api_key_env, "") if api_key_env else ""
    if not key:
        return CheckResult(name="no_secret_in_trace", kind="protocol", passed=True, detail="no API key in use")
    needle = key.encode()
    with open(trace_path, "rb") as fh:
        leaked = any(needle in line for line in fh)
    detail = f"the value of ${api_key_env} appears in the trace" if leaked else f"${api_key_env} not in the trace"
    return CheckResult(name="no_secret_in_trace", kind="protocol", passed=not leaked, detail=detail)


def _evidence_checks(m: EvalMetrics, gate: Gate) -> list[CheckResult]:
    if not gate.require_evidence:
        return []
    return [
        CheckResult(
            name="death_trace",
            kind="evidence",
            passed=m.deaths > 0,
            detail=f"{m.deaths} death(s) traced" if m.deaths else "no death in the trace",
        ),
        CheckResult(
            name="recovery_chains",
            kind="evidence",
            passed=m.recoveries.recovered > 0,
            detail=f"{m.recoveries.recovered} of {m.recoveries.chains} chains recovered",
        ),
        CheckResult(
            name="trap_interactions",
            kind="evidence",
            passed=m.trap_interactions.total > 0,
            detail=f"{m.trap_interactions.total} trap interaction(s)",
        ),
    ]


def _gate_checks(m: EvalMetrics, gate: Gate, aborted: str | None) -> list[CheckResult]:
    checks = [
        CheckResult(
            name="min_ticks",
            kind="gate",
            passed=m.ticks_observed >= gate.min_ticks,
            detail=f"ticksObserved {m.ticks_observed} {'>=' if m.ticks_observed >= gate.min_ticks else '<'} "
            f"{gate.min_ticks}",
        )
    ]
    checks.append(
        CheckResult(
            name="run_completed",
            kind="gate",
            passed=aborted is None,
            detail="every episode ran" if aborted is None else f"run aborted: {aborted}",
        )
    )
    return checks


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def build_report(
    trace_path: Path,
    *,
    run_id: str,
    gate: Gate,
    task_set_hash: str,
    model: dict[str, Any] | None = None,
    target: dict[str, str] | None = None,
    workload: dict[str, Any] | None = None,
    api_key_env: str | None = None,
    duration_s: float | None = None,
    aborted: str | None = None,
) -> EvalReport:
    """Compute the metrics, run every check and decide PASS/FAIL."""
    metrics = compute_metrics(trace_path, gate.context_warmup_ticks)
    schema_check, records = _schema_check(trace_path)
    checks = [schema_check, *_structure_checks(trace_path)]
    checks.append(_context_check(metrics.context_profile, gate))
    checks.append(_secret_check(trace_path, api_key_env))
    checks.extend(_evidence_checks(metrics, gate))
    checks.extend(_gate_checks(metrics, gate, aborted))
    reasons = [f"{c.name}: {c.detail}" for c in checks if not c.passed]
    return EvalReport(
        **metrics.model_dump(),
        run_id=run_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model=model or {},
        target=target or {},
        workload=workload or {},
        task_set_hash=task_set_hash,
        gate_config_hash=gate_config_hash(gate),
        gate=gate.as_dict(),
        trace=TraceRef(path=str(trace_path), sha256=file_sha256(trace_path), records=records),
        duration_s=_round(duration_s, 3),
        aborted=aborted,
        protocol_checks=checks,
        verdict="PASS" if not reasons else "FAIL",
        reasons=reasons,
    )


def report_json(report: EvalReport) -> dict[str, Any]:
    """The report as the JSON object it is written as (camelCase keys, the headline keys first)."""
    data = report.model_dump(mode="json", by_alias=True)
    head = ("schema", "runId", "createdAt", "verdict", "reasons", "taskSetHash", "gateConfigHash")
    return {k: data[k] for k in head} | {k: v for k, v in data.items() if k not in head}


def write_report(report: EvalReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report_json(report), indent=2, ensure_ascii=False) + "\n")


def load_report(path: Path) -> EvalReport:
    return EvalReport.model_validate_json(path.read_bytes())


def report_json_schema() -> dict[str, Any]:
    schema: dict[str, Any] = EvalReport.model_json_schema(by_alias=True)
    schema["$id"] = REPORT_SCHEMA_VERSION
    schema["title"] = "phasef evaluation report"
    return schema
