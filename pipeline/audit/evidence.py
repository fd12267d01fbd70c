"""Gathering the evidence an audit judges, and refusing green-only evidence before any auditor is asked.

The plan's locked rule is that a PASS without deep-water evidence is not a PASS: the packet must carry raw death
traces, recovery chains and a context profile (and, for the final gate, the baseline-vs-fine-tuned comparison).
This module finds them: it analyses the dirty trace (or reads a saved analysis of it), then pulls the raw records
of the chosen deaths and chains out of the trace in one streaming pass, trimmed so that the auditors can read
them, and writes them as packet parts. Whatever is missing is named; the step then stops at NO-GO (green-only).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.audit.packet import PartSpec
from pipeline.audit.params import AuditParams
from pipeline.fsio import atomic_write_text
from pipeline.hashing import file_sha256
from pipeline.traces.analysis import ChainSummary, DeathTrace, TraceAnalysis, analyze
from pipeline.traces.reader import iter_records

TRACE_TITLE = "dirty trace (raw JSONL)"
STRING_CHARS = 600
"""Longest string of a raw record shown to the auditors; the packet hashes the untrimmed trace."""
CHAIN_TICKS_SHOWN = 8
FINDINGS_SHOWN = 20
_RECORD_DEPTH = 6


@dataclass
class Evidence:
    parts: list[PartSpec] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Why the evidence is incomplete (green-only); empty when the auditors may be asked."""
    stats: dict[str, Any] = field(default_factory=dict)


def _existing(evidence: Evidence, title: str, raw: str | None, resolve: Callable[[str], Path]) -> Path | None:
    """The resolved path when the file exists and has content; otherwise note why it is missing."""
    if raw is None:
        return None
    path = resolve(raw)
    if not path.is_file():
        evidence.missing.append(f"{title} not found: {path}")
        return None
    if path.stat().st_size == 0:
        evidence.missing.append(f"{title} is empty: {path}")
        return None
    return path


def _file_part(evidence: Evidence, name: str, title: str, raw: str | None, resolve: Callable[[str], Path]) -> None:
    path = _existing(evidence, title, raw, resolve)
    if path is not None:
        evidence.parts.append(PartSpec(name, title, path))


def collect_evidence(params: AuditParams, resolve: Callable[[str], Path], packet_dir: Path) -> Evidence:
    """Every part the packet should hold, written or located, and what is missing."""
    packet_dir.mkdir(parents=True, exist_ok=True)
    evidence = Evidence()
    _file_part(evidence, "report", "eval report", params.report, resolve)
    trace = _existing(evidence, TRACE_TITLE, params.trace, resolve)
    if trace is not None:
        analysis = _analysis(evidence, params, trace, resolve)
        if analysis is None:
            evidence.parts.append(PartSpec("trace", TRACE_TITLE, trace, inline=False))
        else:
            evidence.parts.append(PartSpec("trace", TRACE_TITLE, trace, inline=False, summary=_trace_summary(analysis)))
            _derived_parts(evidence, params, trace, analysis, packet_dir)
    _file_part(evidence, "comparison", "baseline-vs-fine-tuned comparison", params.comparison, resolve)
    _file_part(evidence, "notes", "architect's notes", params.notes, resolve)
    return evidence


def _trace_summary(analysis: TraceAnalysis) -> str:
    return (
        f"{analysis.records} records, {analysis.episodes} episodes, {analysis.ticks} ticks, "
        f"{len(analysis.bad_lines)} unreadable lines. Its deaths, recovery chains, findings and context profile "
        f"are the derived parts below; their records cite the trace's line numbers."
    )


def _analysis(
    evidence: Evidence, params: AuditParams, trace: Path, resolve: Callable[[str], Path]
) -> TraceAnalysis | None:
    """The trace's analysis: from the saved file when one is named (it must be of this very trace), else fresh."""
    trace_sha = file_sha256(trace)
    if params.analysis is not None:
        saved = _existing(evidence, "saved trace analysis", params.analysis, resolve)
        if saved is None:
            return None
        evidence.parts.append(PartSpec("analysis", "saved trace analysis", saved))
        try:
            analysis = TraceAnalysis.model_validate_json(saved.read_bytes())
        except ValidationError as exc:
            evidence.missing.append(f"saved trace analysis {saved} is not a trace analysis: {exc.errors()[0]['msg']}")
            return None
    else:
        try:
            analysis = analyze(trace)
        except (OSError, ValueError) as exc:
            evidence.missing.append(f"dirty trace {trace} could not be analysed: {exc}")
            return None
    if analysis.sha256 != trace_sha:
        evidence.missing.append(
            f"the trace analysis is of another trace (sha256 {analysis.sha256[:12] or 'not recorded'}..., "
            f"the trace is {trace_sha[:12]}...): the evidence does not belong together"
        )
        return None
    if analysis.records == 0:
        evidence.missing.append(f"dirty trace {trace} has no readable records")
        return None
    return analysis


def _pick_chains(chains: list[ChainSummary], limit: int) -> list[ChainSummary]:
    """Up to ``limit`` chains, alternating between outcomes so recoveries and deaths are both shown."""
    by_outcome: dict[str, list[ChainSummary]] = {}
    for chain in chains:
        by_outcome.setdefault(chain.outcome, []).append(chain)
    queues = [by_outcome[k] for k in ("recovered", "death", "open") if k in by_outcome]
    picked: list[ChainSummary] = []
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


def _chain_ticks_shown(ticks: list[int]) -> list[int]:
    if len(ticks) <= CHAIN_TICKS_SHOWN:
        return ticks
    half = CHAIN_TICKS_SHOWN // 2
    return ticks[:half] + ticks[-half:]


def trim(value: Any, depth: int = 0) -> Any:
    """A raw record made readable: long strings cut (with the count of what was cut), chat context summarised."""
    if isinstance(value, str):
        return value if len(value) <= STRING_CHARS else f"{value[:STRING_CHARS]}…[+{len(value) - STRING_CHARS} chars]"
    if depth >= _RECORD_DEPTH:
        return "…"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "context" and isinstance(item, list):
                chars = sum(len(m.get("content") or "") for m in item if isinstance(m, dict))
                out[key] = f"<{len(item)} messages, {chars} chars; full text in the trace>"
            else:
                out[key] = trim(item, depth + 1)
        return out
    if isinstance(value, list):
        return [trim(item, depth + 1) for item in value]
    return value


def _raw_records(
    trace: Path, wanted: set[tuple[str, int]], episodes: set[str]
) -> tuple[dict[tuple[str, int], dict[str, Any]], dict[str, dict[str, Any]]]:
    """One pass over the trace: the trimmed ticks named in ``wanted`` and the episode ends of ``episodes``."""
    ticks: dict[tuple[str, int], dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    for item in iter_records(trace):
        if not isinstance(item, tuple):
            continue
        line, obj = item
        episode, kind = obj.get("episode"), obj.get("kind")
        if kind == "tick" and (episode, obj.get("tick")) in wanted:
            ticks[(str(episode), int(obj["tick"]))] = {"line": line, **trim(obj)}
        elif kind in ("episode_start", "episode_end") and episode in episodes:
            ends.setdefault(str(episode), {})[str(kind)] = {"line": line, **trim(obj)}
    return ticks, ends


def layout(value: Any, depth: int = 0, open_levels: int = 4) -> str:
    """JSON with the outer levels indented and each raw record (and any list of plain values) on one line:
    readable for the operator, and far fewer characters of the auditors' budget than fully indented JSON."""
    compact = json.dumps(value, ensure_ascii=False, default=str)
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    if depth >= open_levels or not any(isinstance(c, dict | list) and c for c in children):
        return compact
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {layout(v, depth + 1, open_levels)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [f"{inner}{layout(v, depth + 1, open_levels)}" for v in value]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def _write_json(path: Path, data: Any) -> Path:
    atomic_write_text(path, layout(data) + "\n")
    return path


def _derived_parts(
    evidence: Evidence, params: AuditParams, trace: Path, analysis: TraceAnalysis, packet_dir: Path
) -> None:
    deaths: list[DeathTrace] = analysis.deaths[: params.max_deaths]
    chains = _pick_chains(list(analysis.chains), params.max_chains)
    wanted = {(d.episode, t) for d in deaths for t in d.last_ticks}
    wanted |= {(c.episode, t) for c in chains for t in _chain_ticks_shown(c.ticks)}
    raw_ticks, episode_records = _raw_records(trace, wanted, {d.episode for d in deaths})
    trace_sha = analysis.sha256
    evidence.stats = {
        "records": analysis.records,
        "episodes": analysis.episodes,
        "ticks": analysis.ticks,
        "bad_lines": len(analysis.bad_lines),
        "deaths": len(analysis.deaths),
        "chains": len(analysis.chains),
        "context_samples": analysis.context.samples,
        "context_bounded": analysis.context.bounded,
    }

    if not analysis.deaths:
        evidence.missing.append(f"no death traces in {trace} (no episode died): deep-water evidence is missing")
    else:
        death_data = {
            "trace_sha256": trace_sha,
            "deaths_total": len(analysis.deaths),
            "shown": len(deaths),
            "deaths": [
                {
                    **d.model_dump(),
                    "episode_records": episode_records.get(d.episode, {}),
                    "ticks": [raw_ticks[(d.episode, t)] for t in d.last_ticks if (d.episode, t) in raw_ticks],
                }
                for d in deaths
            ],
        }
        path = _write_json(packet_dir / "death_traces.json", death_data)
        evidence.parts.append(PartSpec("death_traces", "raw death traces (last ticks before each death)", path))

    if not analysis.chains:
        evidence.missing.append(f"no recovery chains in {trace}: deep-water evidence is missing")
    else:
        outcomes: dict[str, int] = {}
        for chain in analysis.chains:
            outcomes[chain.outcome] = outcomes.get(chain.outcome, 0) + 1
        chain_data = {
            "trace_sha256": trace_sha,
            "chains_total": len(analysis.chains),
            "by_outcome": outcomes,
            "mttr_ticks": analysis.mttr_ticks,
            "mttr_seconds": analysis.mttr_seconds,
            "shown": len(chains),
            "chains": [
                {
                    **c.model_dump(),
                    "ticks_shown": [
                        raw_ticks[(c.episode, t)] for t in _chain_ticks_shown(c.ticks) if (c.episode, t) in raw_ticks
                    ],
                }
                for c in chains
            ],
        }
        path = _write_json(packet_dir / "recovery_chains.json", chain_data)
        evidence.parts.append(PartSpec("recovery_chains", "recovery chains (failure, attempts, outcome)", path))

    if analysis.context.samples == 0:
        evidence.missing.append(f"no context profile: no tick in {trace} records its context size")
    else:
        profile = {"trace_sha256": trace_sha, "ticks": analysis.ticks, **analysis.context.model_dump()}
        path = _write_json(packet_dir / "context_profile.json", profile)
        evidence.parts.append(PartSpec("context_profile", "context size per tick and the O(1)-bound check", path))

    findings = {
        "trace_sha256": trace_sha,
        "traps": analysis.traps,
        "error_classes": analysis.error_classes,
        "thrash_total": len(analysis.thrash),
        "thrash": [t.model_dump() for t in analysis.thrash[:FINDINGS_SHOWN]],
        "deadlocks_total": len(analysis.deadlocks),
        "deadlocks": [d.model_dump() for d in analysis.deadlocks[:FINDINGS_SHOWN]],
        "oscillations_total": len(analysis.oscillations),
        "oscillations": [o.model_dump() for o in analysis.oscillations[:FINDINGS_SHOWN]],
        "bad_lines_total": len(analysis.bad_lines),
        "bad_lines": [str(b) for b in analysis.bad_lines[:FINDINGS_SHOWN]],
    }
    path = _write_json(packet_dir / "trace_findings.json", findings)
    evidence.parts.append(
        PartSpec("trace_findings", "trap interactions, thrashing, deadlocks, oscillations, error classes", path)
    )
