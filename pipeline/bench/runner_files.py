"""A runner's files as phasef reads them: its gate file, its own report (checked against the report schema) and its
trace (checked against the schema and the episode/chain structure, or imported from another format first).

Every problem is a ``Problem`` (``file:line: field: message``) collected in a ``Validation``; reading goes on past it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from pipeline.bench.params import GateConfig
from pipeline.fsio import atomic_open, atomic_write_text
from pipeline.report.eval_report import (
    EvalReport,
    Gate,
    iter_trace,
    structure_issues,
)
from pipeline.traces.schema import parse_record

IMPORTED_NAME = "imported_trace.jsonl"  # a runner's trace in another format, imported into the step's artifacts
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


def json_key_line(text: str, loc: tuple[Any, ...]) -> int | None:
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
            result.problems.append(Problem(str(path), json_key_line(text, loc), field_name, message))
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
