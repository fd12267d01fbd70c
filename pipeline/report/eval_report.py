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

from pipeline.traces.schema import parse_record

REPORT_SCHEMA_VERSION = "phasef.eval_report/1"
MODEL_ACTORS = frozenset({"model", "repair"})
DEFAULT_WARMUP_TICKS = 5
MAX_LISTED_ISSUES = 10
MAX_DEATH_RECORDS = 200


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class LatencyStats(Camel):
    """Model-call latency in seconds (the request that answered; retries excluded)."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    mean: float | None = None
    max: float | None = None


class MttrStats(Camel):
    """Mean time to recovery: from a chain's failure tick to its recovered tick."""

    samples: int = 0
    ticks: float | None = None
    seconds: float | None = None
    ticks_p50: float | None = None
    seconds_p50: float | None = None


class ContextProfile(Camel):
    """Prompt size per tick, in characters (``context_chars`` of ticks that had a prompt)."""

    samples: int = 0
    max_chars: int = 0
    mean_chars: float | None = None
    p95_chars: float | None = None
    growth_per_tick: float | None = Field(
        default=None, description="within-episode least-squares slope, chars per tick, after the warm-up ticks"
    )
    growth_per_tick_all: float | None = Field(default=None, description="the same slope over all ticks")
    warmup_ticks: int = DEFAULT_WARMUP_TICKS
    max_prompt_tokens: int | None = None
    per_tick_mean: list[float] = Field(default_factory=list, description="mean chars at tick index 0, 1, 2, ...")


class Recoveries(Camel):
    chains: int = 0
    recovered: int = 0
    died: int = 0
    unresolved: int = 0
    by_mechanism: dict[str, int] = Field(default_factory=dict)


class TrapStats(Camel):
    total: int = Field(default=0, description="ticks on which a trap fired")
    by_kind: dict[str, int] = Field(default_factory=dict)
    armed_episodes: dict[str, int] = Field(default_factory=dict)


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
    """What a trace shows, computed from the trace alone."""

    ticks_observed: int = 0
    episodes: int = 0
    episodes_by_outcome: dict[str, int] = Field(default_factory=dict)
    solved: int = 0
    deaths: int = 0
    death_records: list[DeathRecord] = Field(default_factory=list)
    recoveries: Recoveries = Field(default_factory=Recoveries)
    trap_interactions: TrapStats = Field(default_factory=TrapStats)
    latency: LatencyStats = Field(default_factory=LatencyStats)
    model_turns: int = Field(default=0, description="ticks where the model was called (model and repair)")
    model_replies: int = Field(default=0, description="model turns that got a reply")
    schema_violations: int = 0
    schema_violation_rate: float | None = Field(default=None, description="schemaViolations / modelReplies")
    error_classes: dict[str, int] = Field(default_factory=dict)
    actors: dict[str, int] = Field(default_factory=dict)
    thrash_ticks: int = 0
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
    sha256: str
    records: int


class EvalReport(EvalMetrics):
    schema_: str = Field(default=REPORT_SCHEMA_VERSION, alias="schema")
    run_id: str
    created_at: str
    model: dict[str, Any] = Field(default_factory=dict, description="model id and endpoint (never a key)")
    target: dict[str, str] = Field(default_factory=dict, description="target packages and their versions")
    workload: dict[str, Any] = Field(default_factory=dict, description="seed, episodes, prompt and recovery settings")
    task_set_hash: str
    gate_config_hash: str
    gate: dict[str, Any]
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


def within_slope(groups: dict[str, list[tuple[int, int]]]) -> float | None:
    """Least-squares slope of y on x with a separate intercept per group (episode): growth per tick."""
    sxx = sxy = 0.0
    for points in groups.values():
        if len(points) < 2:
            continue
        mx = sum(x for x, _ in points) / len(points)
        my = sum(y for _, y in points) / len(points)
        sxx += sum((x - mx) ** 2 for x, _ in points)
        sxy += sum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx if sxx > 0 else None


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
    by_tick: dict[int, list[int]] = defaultdict(list)
    chains: dict[str, _Chain] = {}
    errors: Counter[str] = Counter()
    actors: Counter[str] = Counter()
    traps: Counter[str] = Counter()
    armed: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    windows: list[int] = []
    max_tokens: int | None = None
    for number, rec in iter_trace(trace_path):
        kind = rec.get("kind") if rec else None
        if rec is None or kind not in ("episode_start", "tick", "episode_end"):
            m.invalid_lines += 1
            continue
        if kind == "episode_start":
            m.episodes += 1
            armed.update(str(t) for t in rec.get("traps") or [])
            window = rec.get("context_window")
            if isinstance(window, int):
                windows.append(window)
            continue
        if kind == "episode_end":
            outcomes[str(rec.get("outcome"))] += 1
            m.solved += bool(rec.get("solved"))
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
        chars = rec.get("context_chars")
        if isinstance(chars, int) and chars > 0:
            contexts[episode].append((tick, chars))
            by_tick[tick].append(chars)
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
    warmup = warmup_ticks if warmup_ticks is not None else (max(windows) + 1 if windows else DEFAULT_WARMUP_TICKS)
    all_chars = [c for points in contexts.values() for _, c in points]
    late = {ep: [(x, y) for x, y in pts if x >= warmup] for ep, pts in contexts.items()}
    m.context_profile = ContextProfile(
        samples=len(all_chars),
        max_chars=max(all_chars) if all_chars else 0,
        mean_chars=_round(mean(all_chars), 2),
        p95_chars=_round(percentile(all_chars, 95), 2),
        growth_per_tick=_round(within_slope(late), 4),
        growth_per_tick_all=_round(within_slope(contexts), 4),
        warmup_ticks=warmup,
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
    context_warmup_ticks: int
    require_evidence: bool

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


def _structure_checks(trace_path: Path) -> list[CheckResult]:
    """Episodes open and close once with contiguous ticks; chains start with a failure and end where they end."""
    episode_issues: list[str] = []
    chain_issues: list[str] = []
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
        where = f"{trace_path}:{number}"
        if kind == "episode_start":
            if episode in started:
                episode_issues.append(f"{where}: episode {episode} starts twice")
            started.add(episode)
            open_eps[episode] = number
            next_tick[episode] = 0
        elif kind == "tick":
            if episode not in open_eps:
                episode_issues.append(f"{where}: tick outside an open episode {episode}")
                continue
            tick = rec.get("tick")
            if tick != next_tick[episode]:
                episode_issues.append(f"{where}: field 'tick': expected {next_tick[episode]}, got {tick}")
            next_tick[episode] = (tick if isinstance(tick, int) else next_tick[episode]) + 1
            chain_id, role = rec.get("chain_id"), rec.get("chain_role")
            previous = last_chain.get(episode)
            if previous and previous != chain_id and previous not in closed_chains:
                chain_issues.append(f"{where}: chain {previous} interrupted before it recovered or died")
                closed_chains.add(previous)
            last_chain[episode] = str(chain_id) if chain_id else None
            if not chain_id:
                if role:
                    chain_issues.append(f"{where}: field 'chain_role' {role!r} without a chain_id")
                elif rec.get("outcome") in ("error", "timeout", "death"):
                    chain_issues.append(f"{where}: failed tick outside any chain")
                continue
            chain_id = str(chain_id)
            if chain_id in closed_chains:
                chain_issues.append(f"{where}: chain {chain_id} continues after it ended")
                continue
            if chain_id not in chain_state:
                if role not in ("failure", "death"):
                    chain_issues.append(f"{where}: chain {chain_id} starts with {role!r}, not 'failure'")
            elif chain_state[chain_id][0] != episode:
                chain_issues.append(f"{where}: chain {chain_id} spans episodes")
            chain_state[chain_id] = (episode, str(role))
            if role in ("recovered", "death"):
                closed_chains.add(chain_id)
        elif kind == "episode_end":
            if episode not in open_eps:
                episode_issues.append(f"{where}: episode {episode} ends without a start")
                continue
            del open_eps[episode]
            if rec.get("ticks") != next_tick.get(episode):
                episode_issues.append(
                    f"{where}: field 'ticks': {rec.get('ticks')} but {next_tick.get(episode)} ticks were recorded"
                )
            closed_chains.update(c for c, (ep, _) in chain_state.items() if ep == episode)
    for episode, number in open_eps.items():
        episode_issues.append(f"{trace_path}:{number}: episode {episode} never ends")
    return [
        _issues_check("episodes_complete", "protocol", episode_issues, f"{len(started)} episodes start and end once"),
        _issues_check("chains_well_formed", "protocol", chain_issues, f"{len(chain_state)} chains well formed"),
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
        problems.append(
            f"prompt grows {growth:.1f} chars/tick after tick {gate.context_warmup_ticks} "
            f"> {gate.max_context_growth_per_tick:g}"
        )
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


def write_report(report: EvalReport, path: Path) -> None:
    from pipeline.fsio import atomic_write_text

    data = report.model_dump(mode="json", by_alias=True)
    head = ("schema", "runId", "createdAt", "verdict", "reasons", "taskSetHash", "gateConfigHash")
    ordered = {k: data[k] for k in head} | {k: v for k, v in data.items() if k not in head}
    atomic_write_text(path, json.dumps(ordered, indent=2, ensure_ascii=False) + "\n")


def load_report(path: Path) -> EvalReport:
    return EvalReport.model_validate_json(path.read_bytes())


def report_json_schema() -> dict[str, Any]:
    schema: dict[str, Any] = EvalReport.model_json_schema(by_alias=True)
    schema["$id"] = REPORT_SCHEMA_VERSION
    schema["title"] = "phasef evaluation report"
    return schema
