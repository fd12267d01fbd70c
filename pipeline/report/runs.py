"""An evaluated run as comparisons read it: its report, its trace (checked against the hash its report recorded),
the run's metrics and its episodes' shares of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.fsio import read_json
from pipeline.report.compare_stats import METRIC_BY_KEY, EpisodeStats, episode_stats, headline
from pipeline.report.eval_report import EvalMetrics, compute_metrics, file_sha256
from pipeline.report.paths import session_relative


class RunRef(BaseModel):
    """One evaluated run: its ``eval_report.json`` (the trace is found through the report unless given)."""

    model_config = ConfigDict(extra="forbid")

    report: str
    trace: str | None = None
    name: str | None = Field(default=None, description="label in tables; default: the report's model id")


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
    data = read_json(path, RunProblem, missing="no such report")
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
