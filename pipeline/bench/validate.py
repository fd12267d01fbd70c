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
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.bench.params import GateConfig
from pipeline.fsio import atomic_open, atomic_write_text
from pipeline.jobs.context import StepContext, StepFailed, parse_params
from pipeline.report.eval_report import (
    EvalMetrics,
    EvalReport,
    Gate,
    build_report,
    file_sha256,
    iter_trace,
    report_json,
    structure_issues,
    write_report,
)
from pipeline.traces.schema import parse_record

MAX_SHOWN = 20
IMPORTED_NAME = "imported_trace.jsonl"  # a runner's trace in another format, imported into the step's artifacts
DEFAULT_FLOAT_TOLERANCE = 1e-6
# Decimals phasef rounds each float figure to; a runner's figure agrees when it is within one unit of the last
# decimal phasef keeps (so a runner that rounds differently, or not at all, still agrees).
FLOAT_DIGITS: dict[str, int] = {
    "schemaViolationRate": 6,
    "latency": 6,
    "mttr": 6,
    "contextProfile.meanChars": 2,
    "contextProfile.p95Chars": 2,
    "contextProfile.growthPerTick": 4,
    "contextProfile.growthPerTickAll": 4,
    "contextProfile.perTickMean": 1,
}
# Mappings whose keys are data (a key missing on one side is a difference), as opposed to sub-objects whose missing
# keys are simply not claimed.
FREE_MAPS = frozenset(
    {
        "episodesByOutcome",
        "errorClasses",
        "actors",
        "recoveries.byMechanism",
        "trapInteractions.byKind",
        "trapInteractions.armedEpisodes",
        "gate",
    }
)
METRIC_KEYS = tuple((info.alias or name) for name, info in EvalMetrics.model_fields.items())
_FIELD_REASON = re.compile(r"^field '([^']*)': (.*)$", re.DOTALL)


@dataclass(frozen=True)
class Problem:
    """One problem: where (file, 1-based line when known), which field, and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


@dataclass
class Validation:
    problems: list[Problem] = field(default_factory=list)
    report: EvalReport | None = None
    """phasef's own report, computed from the trace."""
    runner_report: EvalReport | None = None
    """The runner's report when it is schema-valid (its figures are claims, never used downstream)."""
    trace: Path | None = None
    """The canonical trace the report was computed from (the runner's file, or its import)."""
    trace_records: int = 0
    invalid_trace_lines: int = 0
    notes: list[str] = field(default_factory=list)
    """What was done differently and why (not problems), for the log."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def errors(self) -> list[str]:
        return [str(p) for p in self.problems]


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


# -- the gate ---------------------------------------------------------------------------------------------------


def default_context_budget() -> int:
    """The budget when the gate gives none: the bound of the embedded workload's default prompt settings."""
    from pipeline.bench.params import ApiStepParams
    from pipeline.bench.prompt import PromptSettings

    p = ApiStepParams()
    budget = PromptSettings(
        window=p.window, last_chars=p.last_chars, history_chars=p.history_chars, task_chars=p.task_chars
    ).max_chars()
    assert budget is not None
    return budget


def resolve_gate(config: GateConfig) -> Gate:
    """A gate from config.toml with its defaults filled in (warm-up left per episode unless set)."""
    return Gate(
        min_ticks=config.min_ticks,
        context_budget_chars=config.context_budget_chars or default_context_budget(),
        max_context_growth_per_tick=config.max_context_growth_per_tick,
        context_warmup_ticks=config.context_warmup_ticks,
        require_evidence=config.require_evidence,
    )


class GateFileError(ValueError):
    pass


def load_gate_file(path: Path) -> GateConfig:
    """A gate from a TOML or JSON file: its keys at the top level, in a ``[gate]`` table, or a phasef config whose
    validation step has ``params.gate``."""
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GateFileError(f"{path}: cannot read the gate: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("stages"), dict):
        for stage in data["stages"].values():
            for step in (stage.get("steps") or {}).values() if isinstance(stage, dict) else ():
                params = step.get("params") if isinstance(step, dict) else None
                if isinstance(params, dict) and isinstance(params.get("gate"), dict):
                    data = params["gate"]
                    break
            else:
                continue
            break
        else:
            data = {}
    elif isinstance(data, dict) and isinstance(data.get("gate"), dict):
        data = data["gate"]
    try:
        return GateConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise GateFileError(f"{path}: gate.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None


# -- reading the runner's files ---------------------------------------------------------------------------------


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


def _split_reason(reason: str) -> tuple[str, str]:
    match = _FIELD_REASON.match(reason)
    return (match.group(1), match.group(2)) if match else ("", reason)


def read_report(path: Path, result: Validation) -> tuple[dict[str, Any] | None, str]:
    """The runner's report as raw JSON (for the comparison) and text (for line numbers); schema problems added."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        result.problems.append(Problem(str(path), None, "", f"cannot read: {exc}"))
        return None, ""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        result.problems.append(Problem(str(path), exc.lineno, "", f"not JSON: {exc.msg}"))
        return None, text
    if not isinstance(data, dict):
        result.problems.append(Problem(str(path), 1, "", f"expected a JSON object, got {type(data).__name__}"))
        return None, text
    try:
        result.runner_report = EvalReport.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            field_name = ".".join(str(p) for p in loc) or "(document)"
            message = "required key is missing" if err["type"] == "missing" else err["msg"]
            result.problems.append(Problem(str(path), _json_key_line(text, loc), field_name, message))
    return data, text


def validate_trace(path: Path, result: Validation, structure: bool = True) -> None:
    """Every record against the schema, then (with ``structure``) the episode and chain structure."""
    try:
        for number, obj in iter_trace(path):
            result.trace_records += 1
            if obj is None:
                result.invalid_trace_lines += 1
                result.problems.append(Problem(str(path), number, "", "not a JSON object"))
                continue
            try:
                parse_record(obj)
            except ValidationError as exc:
                result.invalid_trace_lines += 1
                for err in exc.errors():
                    field_name = ".".join(str(p) for p in err["loc"])
                    result.problems.append(Problem(str(path), number, field_name, err["msg"]))
            except ValueError as exc:
                result.invalid_trace_lines += 1
                name, message = _split_reason(str(exc))
                result.problems.append(Problem(str(path), number, name, message))
        episode_issues, chain_issues = structure_issues(path) if structure else ([], [])
    except OSError as exc:
        result.problems.append(Problem(str(path), None, "", f"cannot read: {exc}"))
        return
    for issue in sorted(episode_issues + chain_issues, key=lambda i: i.line):
        result.problems.append(Problem(str(path), issue.line, issue.field, issue.message))


def import_runner_trace(
    path: Path, out: Path, fmt: str | None, mapping: Path | None, result: Validation
) -> Path | None:
    """Convert a runner's own trace (a file, or a run folder) into canonical JSONL at ``out``; ``fmt`` "auto" (or
    None without a mapping) detects the format. Every unusable record, and every file of a folder that could not be
    imported, is a problem."""
    from pipeline.traces.importers import UnknownFormat, import_trace

    forced = None if fmt == "auto" else fmt
    if forced is None and mapping is not None:
        forced = "jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and mapping is None:
        from pipeline.traces.importers.folders import import_folder

        try:
            with atomic_open(out, "wb") as fh:
                summary = import_folder(path, fh, fmt=forced)
        except (OSError, UnknownFormat, ValueError) as exc:
            result.problems.append(Problem(str(path), None, "", f"cannot import: {exc}"))
            return None
        for item in summary.skipped + summary.bad_lines:
            name, message = _split_reason(item.reason)
            result.problems.append(Problem(item.file, item.line, name, message))
        more = summary.skipped_count + summary.bad_line_count - len(summary.skipped) - len(summary.bad_lines)
        if more > 0:
            result.problems.append(Problem(str(path), None, "", f"{more} more unusable file(s) or line(s) not listed"))
        if not summary.records:
            result.problems.append(Problem(str(path), None, "", "no trace could be imported from this folder"))
            return None
        result.notes.append(
            f"imported {path} ({summary.files} file(s): {', '.join(sorted(summary.formats)) or 'none'}) -> {out}"
        )
        return out
    try:
        records, bad = import_trace(path, forced, mapping=mapping)
    except (OSError, UnknownFormat, ValueError) as exc:
        result.problems.append(Problem(str(path), None, "", f"cannot import: {exc}"))
        return None
    for item in bad:
        name, message = _split_reason(item.reason)
        result.problems.append(Problem(item.file, item.line, name, message))
    if not records or (bad and not any(r.get("kind") == "tick" for r in records)):
        # nothing of the runner's trace made it through: no report is computed from an empty import
        result.problems.append(Problem(str(path), None, "", f"no tick could be imported ({forced or 'detected'})"))
        return None
    atomic_write_text(out, "".join(orjson.dumps(r).decode() + "\n" for r in records))
    source = records[0].get("source") if records else None
    found = source.get("format") if isinstance(source, dict) else forced
    result.notes.append(f"imported {path} ({found or 'unknown format'}; {len(bad)} place(s) unusable) -> {out}")
    return out


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


# -- the comparison ---------------------------------------------------------------------------------------------


def _tolerance(path: str, default: float) -> float:
    for prefix, digits in FLOAT_DIGITS.items():
        if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
            return 10.0**-digits
    return default


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(path: str, claimed: Any, actual: Any, tol: float, out: list[tuple[str, str]]) -> None:
    """Append ``(path, message)`` for every figure of ``claimed`` that differs from ``actual``."""
    if isinstance(claimed, dict) and isinstance(actual, dict):
        free = path in FREE_MAPS
        keys = sorted(set(claimed) | set(actual)) if free else [k for k in actual if k in claimed]
        for key in keys:
            if key not in claimed:
                out.append((f"{path}.{key}", f"report has no entry, phasef computes {actual[key]} from the trace"))
            elif key not in actual:
                out.append((f"{path}.{key}", f"report says {claimed[key]}, phasef finds no entry in the trace"))
            else:
                _compare(f"{path}.{key}", claimed[key], actual[key], tol, out)
        return
    if isinstance(claimed, list) and isinstance(actual, list):
        if len(claimed) != len(actual):
            out.append((path, f"report lists {len(claimed)} entries, phasef finds {len(actual)} in the trace"))
        for index, (c, a) in enumerate(zip(claimed, actual, strict=False)):
            _compare(f"{path}[{index}]", c, a, tol, out)
        return
    if _is_number(claimed) and _is_number(actual):
        if isinstance(claimed, int) and isinstance(actual, int):
            if claimed != actual:
                out.append((path, f"report says {claimed}, phasef computes {actual} from the trace"))
            return
        limit = _tolerance(path, tol)
        if not math.isclose(float(claimed), float(actual), rel_tol=0.0, abs_tol=limit):
            out.append((path, f"report says {claimed}, phasef computes {actual} from the trace (tolerance ±{limit:g})"))
        return
    if claimed != actual:
        c = "null" if claimed is None else json.dumps(claimed)
        a = "null" if actual is None else json.dumps(actual)
        out.append((path, f"report says {c}, phasef computes {a} from the trace"))


def compare_reports(
    claims: dict[str, Any],
    text: str,
    mine: EvalReport,
    report_path: Path,
    trace_path: Path,
    *,
    tolerance: float = DEFAULT_FLOAT_TOLERANCE,
    check_hash: bool = True,
    compare_trace_ref: bool = True,
) -> list[Problem]:
    """Every claim of a runner's report (raw JSON) that phasef's report of the same trace contradicts."""
    ours = report_json(mine)
    if not compare_trace_ref:
        # an imported trace: phasef's death lines are lines of its canonical import, not of the runner's file
        claims = dict(claims)
        for data in (claims, ours):
            if isinstance(data.get("deathRecords"), list):
                data["deathRecords"] = [
                    {k: v for k, v in d.items() if k != "line"} if isinstance(d, dict) else d
                    for d in data["deathRecords"]
                ]
    diffs: list[tuple[str, str]] = []
    for key in METRIC_KEYS:
        if key in claims:
            _compare(key, claims[key], ours[key], tolerance, diffs)
    gate_diffs: list[tuple[str, str]] = []
    if "gate" in claims:
        _compare("gate", claims["gate"], ours["gate"], tolerance, gate_diffs)
    diffs.extend(
        (p, m.replace("phasef computes", "phasef's gate (config.toml) has").replace(" from the trace", ""))
        for p, m in gate_diffs
    )
    if "gateConfigHash" in claims and claims["gateConfigHash"] != mine.gate_config_hash:
        diffs.append(
            (
                "gateConfigHash",
                f"report says {claims['gateConfigHash']}, phasef's gate (config.toml) hashes to "
                f"{mine.gate_config_hash}: the report was not judged by the same gate",
            )
        )
    trace_ref = claims.get("trace") if isinstance(claims.get("trace"), dict) else {}
    assert isinstance(trace_ref, dict)
    if check_hash and "sha256" in trace_ref and trace_ref["sha256"] != file_sha256(trace_path):
        diffs.append(
            ("trace.sha256", f"report says {trace_ref['sha256']}, {trace_path} hashes to {file_sha256(trace_path)}")
        )
    if compare_trace_ref and "records" in trace_ref:
        _compare("trace.records", trace_ref["records"], mine.trace.records, tolerance, diffs)
    checks = {c.name: c for c in mine.protocol_checks}
    claimed_checks = claims.get("protocolChecks") if isinstance(claims.get("protocolChecks"), list) else []
    assert isinstance(claimed_checks, list)
    failed_own: list[str] = []
    for index, check in enumerate(claimed_checks):
        if not isinstance(check, dict):
            continue
        name, passed = check.get("name"), check.get("passed")
        if passed is False:
            failed_own.append(str(name))
        ours_check = checks.get(str(name))
        if ours_check is not None and isinstance(passed, bool) and passed != ours_check.passed:
            diffs.append(
                (
                    f"protocolChecks[{index}].passed",
                    f"report says check {name!r} {'passed' if passed else 'failed'}, phasef's check "
                    f"{'passed' if ours_check.passed else 'failed'}: {ours_check.detail}",
                )
            )
    verdict = claims.get("verdict")
    if verdict == "PASS" and failed_own:
        diffs.append(
            ("verdict", f"report says PASS although its own protocol check(s) failed: {', '.join(failed_own)}")
        )
    if isinstance(verdict, str) and verdict != mine.verdict:
        why = f": {'; '.join(mine.reasons)}" if mine.reasons else ""
        diffs.append(
            (
                "verdict",
                f"report says {verdict}, phasef's verdict under the same gate "
                f"(gateConfigHash {mine.gate_config_hash[:12]}) is {mine.verdict}{why}",
            )
        )
    problems = []
    for path, message in diffs:
        loc = tuple(part for part in re.split(r"[.\[\]]+", path) if part and not part.isdigit())
        problems.append(Problem(str(report_path), _json_key_line(text, loc), path, message))
    return problems


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
