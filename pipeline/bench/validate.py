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
    # The runner writes its trace in another agent format (``claude-code``, ``codex``, ``voyager``, ... or "auto"
    # to detect it): it is imported into this step's artifacts first and the canonical copy is what is validated.
    trace_format: str | None = None


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


def check_consistency(
    report_path: Path, trace_path: Path, result: Validation, check_hash: bool, hashed: Path | None = None
) -> None:
    """The report's numbers against the trace; its ``trace.sha256`` against ``hashed`` (the file the runner wrote,
    when ``trace_path`` is a canonical import of it) or ``trace_path``."""
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
    source = hashed if hashed is not None else trace_path
    if check_hash and source.is_file() and report.trace.sha256 != file_sha256(source):
        line = _json_key_line(text, ("trace", "sha256"))
        result.errors.append(f"{report_path}:{line}: trace.sha256: does not match {source}")


def validate_files(
    report_path: Path,
    trace_path: Path,
    *,
    consistency: bool = True,
    check_hash: bool = False,
    hashed: Path | None = None,
) -> Validation:
    result = Validation()
    validate_report(report_path, result)
    validate_trace(trace_path, result)
    if consistency:
        check_consistency(report_path, trace_path, result, check_hash, hashed)
    return result


def import_runner_trace(source: Path, fmt: str, target: Path) -> list[str]:
    """Import a runner's trace (a file or a run folder, in ``fmt`` or detected for "auto") into canonical JSONL at
    ``target`` (written atomically); returns the places that could not be used as ``file:line: reason``. Raises
    ``StepFailed`` when nothing could be imported."""
    import orjson

    from pipeline.fsio import atomic_open
    from pipeline.traces.importers import UnknownFormat, import_trace
    from pipeline.traces.importers.folders import import_folder

    forced = None if fmt == "auto" else fmt
    try:
        if source.is_dir():
            with atomic_open(target, "wb") as fh:
                summary = import_folder(source, fh, fmt=forced)
            problems = [str(b) for b in summary.skipped + summary.bad_lines]
            if not summary.records:
                raise StepFailed(f"{source}: no trace could be imported ({len(problems)} problem(s))")
            return problems
        records, bad = import_trace(source, forced)
    except (OSError, UnknownFormat, ValueError) as exc:
        raise StepFailed(f"cannot import the runner's trace {source}: {exc}") from None
    if bad and not any(r.get("kind") == "tick" for r in records):
        raise StepFailed(f"cannot import the runner's trace {source} as {fmt}: no tick in it; first problem: {bad[0]}")
    with atomic_open(target, "wb") as fh:
        for record in records:
            fh.write(orjson.dumps(record) + b"\n")
    return [str(b) for b in bad]


def validate_step(ctx: StepContext) -> dict[str, Any]:
    """Builtin step: ``params = { report = "...", trace = "..." }``; fails listing every problem found."""
    try:
        params = ValidateParams.model_validate(ctx.params)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise StepFailed(f"params.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    report_path, trace_path = ctx.resolve(params.report), ctx.resolve(params.trace)
    runner_trace: Path | None = None
    if params.trace_format is not None and params.trace_format != "phasef":
        runner_trace, trace_path = trace_path, ctx.artifact("imported_trace.jsonl")
        problems = import_runner_trace(runner_trace, params.trace_format, trace_path)
        ctx.log(f"imported {runner_trace} ({params.trace_format}) -> {trace_path}; {len(problems)} place(s) skipped")
        for problem in problems[:MAX_ERRORS]:
            ctx.log(problem)
    check_hash = params.check_trace_hash
    if check_hash and runner_trace is not None and runner_trace.is_dir():
        ctx.log(f"trace.sha256 not checked: the runner's trace {runner_trace} is a folder, not one file")
        check_hash = False
    result = validate_files(
        report_path,
        trace_path,
        consistency=params.check_consistency,
        check_hash=check_hash,
        hashed=runner_trace,
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
        **({"runnerTrace": str(runner_trace)} if runner_trace is not None else {}),
    }
