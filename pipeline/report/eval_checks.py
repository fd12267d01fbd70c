"""The checks of an evaluation report: protocol (schema, episode and chain structure, O(1) prompt growth, no leaked
secret), the evidence the plan demands, and the gates (``Gate``: ticks observed, the run not aborted)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from pipeline.report.eval_metrics import Camel, ContextProfile, EvalMetrics, iter_trace
from pipeline.traces.schema import parse_record

MAX_LISTED_ISSUES = 10


class CheckResult(Camel):
    name: str
    kind: Literal["protocol", "evidence", "gate"]
    passed: bool
    detail: str


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


def run_checks(
    trace_path: Path, metrics: EvalMetrics, gate: Gate, api_key_env: str | None, aborted: str | None
) -> tuple[list[CheckResult], int]:
    """Every check of a report, in the order it lists them, and the count of the trace's records."""
    schema_check, records = _schema_check(trace_path)
    checks = [schema_check, *_structure_checks(trace_path)]
    checks.append(_context_check(metrics.context_profile, gate))
    checks.append(_secret_check(trace_path, api_key_env))
    checks.extend(_evidence_checks(metrics, gate))
    checks.extend(_gate_checks(metrics, gate, aborted))
    return checks, records
