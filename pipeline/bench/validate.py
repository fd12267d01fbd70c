"""Validate an eval report and its dirty trace against the published schemas, wherever they came from.

Used as a builtin step after a shell step that runs an external benchmark (see
``examples/external-stage-a.toml``): the external runner's report must be a ``phasef.eval_report/1`` document and
its trace ``phasef.dirty_trace/1`` JSONL, and the report's numbers must be the ones its trace shows (recomputed
here). Every problem is reported as ``file:line: field: message`` and the whole input is still checked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.jobs.context import StepContext, StepFailed
from pipeline.report.eval_report import EvalReport, compute_metrics, file_sha256, iter_trace
from pipeline.traces.schema import parse_record

MAX_ERRORS = 50
_COMPARED = (
    ("ticksObserved", "ticks_observed"),
    ("episodes", "episodes"),
    ("deaths", "deaths"),
    ("solved", "solved"),
    ("schemaViolations", "schema_violations"),
)


class ValidateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    report: str
    trace: str
    check_consistency: bool = True
    check_trace_hash: bool = False
    require_pass: bool = False


@dataclass
class Validation:
    errors: list[str] = field(default_factory=list)
    report: EvalReport | None = None
    trace_records: int = 0
    invalid_trace_lines: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def _json_key_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Line of the deepest key of ``loc`` found in order in a pretty-printed JSON text (a light scanner)."""
    pos, line = 0, None
    for part in loc:
        if isinstance(part, int):
            continue
        match = re.compile(r'"' + re.escape(str(part)) + r'"\s*:').search(text, pos)
        if match is None:
            break
        pos = match.end()
        line = text.count("\n", 0, match.start()) + 1
    return line


def validate_report(path: Path, result: Validation) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        result.errors.append(f"{path}: cannot read: {exc}")
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        result.errors.append(f"{path}:{exc.lineno}: not JSON: {exc.msg}")
        return
    try:
        result.report = EvalReport.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _json_key_line(text, loc)
            where = f"{path}:{line}" if line else str(path)
            field_name = ".".join(str(p) for p in loc) or "(document)"
            message = "required key is missing" if err["type"] == "missing" else err["msg"]
            result.errors.append(f"{where}: {field_name}: {message}")


def validate_trace(path: Path, result: Validation) -> None:
    try:
        for number, obj in iter_trace(path):
            result.trace_records += 1
            if obj is None:
                result.invalid_trace_lines += 1
                result.errors.append(f"{path}:{number}: not a JSON object")
                continue
            try:
                parse_record(obj)
            except ValidationError as exc:
                result.invalid_trace_lines += 1
                for err in exc.errors():
                    field_name = ".".join(str(p) for p in err["loc"])
                    result.errors.append(f"{path}:{number}: {field_name}: {err['msg']}")
            except ValueError as exc:
                result.invalid_trace_lines += 1
                result.errors.append(f"{path}:{number}: {exc}")
    except OSError as exc:
        result.errors.append(f"{path}: cannot read: {exc}")


def check_consistency(report_path: Path, trace_path: Path, result: Validation, check_hash: bool) -> None:
    report = result.report
    if report is None or not trace_path.is_file():
        return
    metrics = compute_metrics(trace_path, report.context_profile.warmup_ticks)
    text = report_path.read_text(encoding="utf-8")
    for key, attr in _COMPARED:
        claimed, actual = getattr(report, attr), getattr(metrics, attr)
        if claimed != actual:
            line = _json_key_line(text, (key,))
            result.errors.append(f"{report_path}:{line}: {key}: report says {claimed}, the trace shows {actual}")
    if report.recoveries.recovered != metrics.recoveries.recovered:
        line = _json_key_line(text, ("recoveries", "recovered"))
        result.errors.append(
            f"{report_path}:{line}: recoveries.recovered: report says {report.recoveries.recovered}, "
            f"the trace shows {metrics.recoveries.recovered}"
        )
    if check_hash and report.trace.sha256 != file_sha256(trace_path):
        line = _json_key_line(text, ("trace", "sha256"))
        result.errors.append(f"{report_path}:{line}: trace.sha256: does not match {trace_path}")


def validate_files(
    report_path: Path, trace_path: Path, *, consistency: bool = True, check_hash: bool = False
) -> Validation:
    result = Validation()
    validate_report(report_path, result)
    validate_trace(trace_path, result)
    if consistency:
        check_consistency(report_path, trace_path, result, check_hash)
    return result


def validate_step(ctx: StepContext) -> dict[str, Any]:
    """Builtin step: ``params = { report = "...", trace = "..." }``; fails listing every problem found."""
    try:
        params = ValidateParams.model_validate(ctx.params)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise StepFailed(f"params.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    report_path, trace_path = ctx.resolve(params.report), ctx.resolve(params.trace)
    result = validate_files(
        report_path, trace_path, consistency=params.check_consistency, check_hash=params.check_trace_hash
    )
    for line in result.errors[:MAX_ERRORS]:
        ctx.log(line)
    if len(result.errors) > MAX_ERRORS:
        ctx.log(f"... and {len(result.errors) - MAX_ERRORS} more")
    if result.errors:
        raise StepFailed(
            f"{len(result.errors)} problem(s) in {report_path.name} / {trace_path.name}; first: {result.errors[0]}"
        )
    assert result.report is not None
    if params.require_pass and result.report.verdict != "PASS":
        raise StepFailed(f"the report's verdict is {result.report.verdict}: {'; '.join(result.report.reasons)}")
    return {
        "valid": True,
        "verdict": result.report.verdict,
        "reasons": result.report.reasons,
        "ticksObserved": result.report.ticks_observed,
        "traceRecords": result.trace_records,
        "report": str(report_path),
        "trace": str(trace_path),
    }
