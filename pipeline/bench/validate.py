"""An external benchmark runner's trace, judged by phasef: phasef computes the eval report, the runner only claims.

Used as a builtin step after a shell step that runs the user's own benchmark (``examples/external-stage-a.toml``).
The runner has to write its dirty trace (``phasef.dirty_trace/1`` JSONL, or its own format through an importer or a
mapping file: an agent's log such as Claude Code or Codex sessions, a file or a whole run folder such as a Voyager
checkpoint, ``trace_format = "auto"`` to detect it); phasef then

1. checks every trace record against the schema and the episode/chain structure (docs/trace-format.md),
2. **computes the eval report itself** from the trace, with the gate of the step's ``params.gate`` (config.toml),
   and writes it to the step's artifacts (``eval_report.json``): evidence and comparisons downstream use this
   report, never the runner's numbers,
3. when the runner wrote a report too, checks it against the report schema and compares it figure by figure with
   phasef's: every differing figure is a problem naming the field and both values (floats within a stated
   tolerance, ``float_tolerance``), and a verdict that differs from phasef's under the same gate is a problem.

Every problem is reported as ``file:line: field: message``; the whole input is still checked, and the full list is
written to a file whose path is shown with the first problems.

Reading the runner's files lives in ``runner_files``, comparing its report with phasef's in ``claims``; this module
computes phasef's report and runs the whole check (the names of both are re-exported here).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.bench.claims import DEFAULT_FLOAT_TOLERANCE, compare_reports
from pipeline.bench.params import GateConfig
from pipeline.bench.runner_files import (
    IMPORTED_NAME,
    GateFileError,
    Problem,
    Validation,
    default_context_budget,
    import_runner_trace,
    load_gate_file,
    read_report,
    resolve_gate,
    validate_trace,
)
from pipeline.fsio import atomic_write_text
from pipeline.jobs.context import StepContext, StepFailed, parse_params
from pipeline.report.eval_report import (
    EvalReport,
    Gate,
    build_report,
    iter_trace,
    write_report,
)

__all__ = [
    "DEFAULT_FLOAT_TOLERANCE",
    "GateFileError",
    "Problem",
    "ValidateParams",
    "Validation",
    "check_run",
    "compare_reports",
    "default_context_budget",
    "import_runner_trace",
    "load_gate_file",
    "phasef_report",
    "read_report",
    "resolve_gate",
    "shown_problems",
    "validate_files",
    "validate_step",
    "validate_trace",
    "write_problems",
]

MAX_SHOWN = 20


class ValidateParams(BaseModel):
    """The ``params`` table of the ``pipeline.bench.validate:validate_step`` builtin step."""

    model_config = ConfigDict(extra="forbid")
    trace: str = Field(description="the trace the runner wrote")
    report: str | None = Field(default=None, description="the runner's own eval report (its claims), if it writes one")
    trace_format: str | None = Field(
        default=None,
        description="the trace's format when it is not phasef JSONL (any importer: trace import --from), or auto to "
        "detect it; the trace may be a run folder (a Voyager checkpoint, a Claude Code project folder)",
    )
    trace_map: str | None = Field(
        default=None, description="a mapping file (TOML) for a runner's own JSONL (trace import --from jsonl --map)"
    )
    gate: GateConfig = Field(default_factory=GateConfig, description="the gate phasef judges the trace by")
    api_key_env: str | None = Field(default=None, description="environment variable whose value must not leak")
    float_tolerance: float = Field(
        default=DEFAULT_FLOAT_TOLERANCE, ge=0, description="tolerance of float figures without a stated rounding"
    )
    check_consistency: bool = Field(default=True, description="compare the runner's report with phasef's")
    check_trace_hash: bool = Field(default=True, description="compare the runner's trace.sha256 with the file")
    require_pass: bool = Field(default=False, description="fail the step unless phasef's verdict is PASS")
    out: str = Field(default="eval_report.json", description="phasef's report, in the step's artifacts folder")
    problems_file: str = Field(default="problems.txt", description="the full problem list, in the artifacts folder")
    max_shown: int = Field(default=MAX_SHOWN, ge=1, description="problems shown in the log and the failure")


# -- phasef's report --------------------------------------------------------------------------------------------


def trace_task_set_hash(trace: Path) -> str:
    """sha256 of the canonical JSON of the sorted ``[task_id, task]`` pairs of the trace's episode_start records
    (what phasef can know of the task set when the runner states no taskSetHash)."""
    pairs = sorted(
        {
            (str(rec.get("task_id") or ""), str(rec.get("task") or ""))
            for _, rec in iter_trace(trace)
            if rec and rec.get("kind") == "episode_start"
        }
    )
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


def trace_aborted(trace: Path) -> str | None:
    for _, rec in iter_trace(trace):
        if rec and rec.get("kind") == "episode_end" and rec.get("outcome") == "aborted":
            reason = rec.get("reason")
            return f"episode {rec.get('episode')} aborted" + (f": {reason}" if reason else "")
    return None


def phasef_report(
    trace: Path, gate: Gate, claims: dict[str, Any] | None = None, *, api_key_env: str | None = None
) -> EvalReport:
    """phasef's report of ``trace``. From the runner's report only what a trace cannot show is taken (run id, model,
    target, workload, task set hash, duration, an abort it declares); every figure and the verdict are phasef's."""
    claims = claims or {}

    def text(key: str) -> str | None:
        value = claims.get(key)
        return value if isinstance(value, str) and value else None

    def mapping(key: str) -> dict[str, Any]:
        value = claims.get(key)
        return value if isinstance(value, dict) else {}

    run_id = text("runId")
    if run_id is None:
        run_ids = {str(rec.get("run_id")) for _, rec in iter_trace(trace) if rec and rec.get("run_id")}
        run_id = sorted(run_ids)[0] if len(run_ids) == 1 else trace.stem
    duration = claims.get("durationS")
    return build_report(
        trace,
        run_id=run_id,
        gate=gate,
        task_set_hash=text("taskSetHash") or trace_task_set_hash(trace),
        model=mapping("model"),
        target={str(k): str(v) for k, v in mapping("target").items()},
        workload=mapping("workload"),
        api_key_env=api_key_env,
        duration_s=float(duration) if isinstance(duration, int | float) and not isinstance(duration, bool) else None,
        aborted=text("aborted") or trace_aborted(trace),
    )


# -- the whole check --------------------------------------------------------------------------------------------


def check_run(
    trace: Path,
    *,
    gate: Gate,
    report: Path | None = None,
    fmt: str | None = None,
    mapping: Path | None = None,
    workdir: Path | None = None,
    api_key_env: str | None = None,
    tolerance: float = DEFAULT_FLOAT_TOLERANCE,
    consistency: bool = True,
    check_hash: bool = True,
) -> Validation:
    """Validate a runner's trace (imported first when ``fmt``/``mapping`` say so), compute phasef's report from it
    and, when ``report`` is given, compare the runner's claims with it."""
    result = Validation()
    canonical: Path | None = trace
    imported = mapping is not None or (fmt is not None and fmt != "phasef")
    if imported:
        out = workdir / IMPORTED_NAME if workdir is not None else trace.parent / f"{trace.stem}.phasef.jsonl"
        canonical = import_runner_trace(trace, out, fmt, mapping, result)
        if check_hash and report is not None and trace.is_dir():
            result.notes.append(f"trace.sha256 not checked: the runner's trace {trace} is a folder, not one file")
            check_hash = False
    elif not trace.is_file():
        result.problems.append(Problem(str(trace), None, "", "no such file" if not trace.exists() else "not a file"))
        canonical = None
    claims: dict[str, Any] | None = None
    text = ""
    if report is not None:
        claims, text = read_report(report, result)
    if canonical is None:
        return result
    # The structure rules (contiguous ticks, marked chains) bind a runner that writes phasef JSONL; an imported trace
    # carries what its format has, and phasef's report judges its structure in the protocol checks.
    validate_trace(canonical, result, structure=not imported)
    result.trace = canonical
    result.report = phasef_report(canonical, gate, claims, api_key_env=api_key_env)
    if report is not None and claims is not None and consistency:
        result.problems.extend(
            compare_reports(
                claims,
                text,
                result.report,
                report,
                trace,
                tolerance=tolerance,
                check_hash=check_hash,
                compare_trace_ref=not imported,
            )
        )
    return result


def validate_files(
    report_path: Path,
    trace_path: Path,
    *,
    gate: Gate,
    consistency: bool = True,
    check_hash: bool = False,
) -> Validation:
    """A runner's report and trace, judged by ``gate`` (the gate of config.toml, never the runner's own)."""
    return check_run(trace_path, gate=gate, report=report_path, consistency=consistency, check_hash=check_hash)


def write_problems(problems: list[Problem], path: Path) -> None:
    """The full list, one ``file:line: field: message`` per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(f"{p}\n" for p in problems))


def shown_problems(problems: list[Problem], limit: int, full_list: Path) -> list[str]:
    """The first ``limit`` problems as lines, then where the full list is."""
    lines = [str(p) for p in problems[:limit]]
    more = f"{len(problems) - limit} more; " if len(problems) > limit else ""
    lines.append(f"{len(problems)} problem(s); {more}full list: {full_list}")
    return lines


def validate_step(ctx: StepContext) -> dict[str, Any]:
    """Builtin step: judge a runner's trace (and its report's claims); fails listing the problems found."""
    params = parse_params(ValidateParams, ctx.params)
    trace_path = ctx.resolve(params.trace)
    report_path = ctx.resolve(params.report) if params.report else None
    mapping = ctx.resolve(params.trace_map) if params.trace_map else None
    gate = resolve_gate(params.gate)
    result = check_run(
        trace_path,
        gate=gate,
        report=report_path,
        fmt=params.trace_format,
        mapping=mapping,
        workdir=ctx.artifacts_dir,
        api_key_env=params.api_key_env,
        tolerance=params.float_tolerance,
        consistency=params.check_consistency,
        check_hash=params.check_trace_hash,
    )
    for note in result.notes:
        ctx.log(note)
    out = ctx.artifact(params.out)
    problems_path = ctx.artifact(params.problems_file)
    write_problems(result.problems, problems_path)
    if result.report is not None:
        write_report(result.report, out)
    if result.problems:
        for line in shown_problems(result.problems, params.max_shown, problems_path):
            ctx.log(line)
        first = "; ".join(str(p) for p in result.problems[:3])
        raise StepFailed(f"{len(result.problems)} problem(s); full list: {problems_path}; first: {first}")
    assert result.report is not None
    mine = result.report
    ctx.log(f"phasef's report: {mine.verdict} ({mine.ticks_observed} ticks) -> {out}")
    if params.require_pass and mine.verdict != "PASS":
        raise StepFailed(f"phasef's verdict is {mine.verdict}: {'; '.join(mine.reasons)}")
    return {
        "valid": True,
        "verdict": mine.verdict,
        "reasons": mine.reasons,
        "ticksObserved": mine.ticks_observed,
        "gateConfigHash": mine.gate_config_hash,
        "traceRecords": result.trace_records,
        "report": str(out),
        "runnerReport": str(report_path) if report_path else None,
        "trace": str(result.trace),
        **({"runnerTrace": str(trace_path)} if result.trace is not None and result.trace != trace_path else {}),
        "problems": str(problems_path),
    }
