"""The evaluation report (``phasef.eval_report/1``): metrics recomputed from a dirty trace, protocol checks and gates.

Every number in a report is computed here from the trace file alone, so anyone can recompute it, and so a
comparison of two runs (``compute_metrics`` on each) measures both the same way. Reports carry the hash of their
task set and of their gate config: reports whose hashes differ were not judged alike and must not be compared.

A report PASSes only when every check passes: the protocol checks (the trace is schema-valid, episodes and chains
are well formed, the prompt stayed O(1) in ticks, no secret leaked into the trace), the evidence the plan demands
(a death trace, a recovered chain, a trap interaction, a context profile) and the gates (at least ``min_ticks``
ticks observed, the run not aborted). Keys are camelCase, as the plan spells ``ticksObserved``.

The metrics are computed in ``eval_metrics`` and the checks made in ``eval_checks``; both are re-exported here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipeline.fsio import atomic_write_text
from pipeline.hashing import file_sha256
from pipeline.report.eval_checks import (
    CheckResult,
    Gate,
    TraceIssue,
    canonical_hash,
    gate_config_hash,
    run_checks,
    structure_issues,
)
from pipeline.report.eval_metrics import (
    MODEL_ACTORS,
    Camel,
    ContextProfile,
    DeathRecord,
    EvalMetrics,
    LatencyStats,
    MttrStats,
    Recoveries,
    TrapStats,
    compute_metrics,
    iter_trace,
    mean,
    percentile,
)

__all__ = [
    "MODEL_ACTORS",
    "REPORT_SCHEMA_VERSION",
    "CheckResult",
    "ContextProfile",
    "DeathRecord",
    "EvalMetrics",
    "EvalReport",
    "Gate",
    "LatencyStats",
    "MttrStats",
    "Recoveries",
    "TraceIssue",
    "TraceRef",
    "TrapStats",
    "build_report",
    "canonical_hash",
    "compute_metrics",
    "file_sha256",
    "gate_config_hash",
    "iter_trace",
    "load_report",
    "mean",
    "percentile",
    "report_json",
    "report_json_schema",
    "structure_issues",
    "write_report",
]

REPORT_SCHEMA_VERSION = "phasef.eval_report/1"


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
    checks, records = run_checks(trace_path, metrics, gate, api_key_env, aborted)
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
        duration_s=None if duration_s is None else round(duration_s, 3),
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
