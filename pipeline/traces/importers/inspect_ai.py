"""inspect_ai eval logs: an ``EvalLog`` JSON document (``version``, ``eval``, ``samples[]``), or a ``.eval`` file,
which is a ZIP archive of the same content split into parts (``header.json`` or ``_journal/start.json`` for the
header, one ``samples/<id>_epoch_<n>.json`` per sample, plus summaries). One episode per sample and epoch.

A sample's ``messages`` are an OpenAI-style chat: each tool call of an assistant message is one tick, answered by
the tool message with that ``tool_call_id``; tool errors are explicit (``error: {type, message}``) and their types
map to canonical error classes. A tool message whose call is not in the chat still becomes a tick (its call is
unknown, its result and error are not). ``tool`` events, when present, give the ticks real timestamps.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import orjson

from pipeline.traces.importers._common import (
    EpisodeBuilder,
    Origin,
    Step,
    one_line,
    parse_timestamp,
    respond_step,
    text_of,
)
from pipeline.traces.reader import BadLine

FORMAT = "inspect-ai"
MEMBER_LIMIT_BYTES = 256 * 2**20
"""An archive member is decompressed whole; one that says it is larger (a zip bomb, or a damaged header) is refused."""

# inspect_ai's ToolCallError types -> canonical error classes.
ERROR_CLASSES = {
    "parsing": "SchemaViolation",
    "timeout": "Timeout",
    "unicode_decode": "UnicodeDecodeError",
    "permission": "PermissionDenied",
    "file_not_found": "NotFound",
    "is_a_directory": "IsADirectory",
    "limit": "LimitExceeded",
    "approval": "ApprovalDenied",
    "unknown": "ToolError",
    "output_limit": "ContextOverflow",
}
_SAMPLE_NAME = re.compile(r"^samples/(.+)_epoch_(\d+)\.json$")


def sniff(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("eval"), dict)
        and "version" in doc
        and ("samples" in doc or "results" in doc or "status" in doc)
    )


def is_eval_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return (
        "header.json" in names
        or "_journal/start.json" in names
        or "start.json" in names
        or any(n.startswith("samples/") for n in names)
    )


def _score_solved(scores: Any) -> bool | None:
    """Whether the first readable score says correct; None when no score can be read."""
    if not isinstance(scores, dict):
        return None
    for score in scores.values():
        value = score.get("value") if isinstance(score, dict) else score
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return value >= 1
        if value in ("C", "correct"):
            return True
        if value in ("I", "incorrect", "P", "partial"):
            return False
    return None


def _tool_event_times(events: Any) -> dict[str, float]:
    times: dict[str, float] = {}
    if isinstance(events, list):
        for event in events:
            if isinstance(event, dict) and event.get("event") == "tool" and isinstance(event.get("id"), str):
                ts = parse_timestamp(event.get("timestamp"))
                if ts is not None:
                    times[event["id"]] = ts
    return times


def _apply_result(step: Step, message: dict[str, Any]) -> None:
    step.observation = text_of(message.get("content"))
    error = message.get("error")
    if isinstance(error, dict):
        kind = str(error.get("type") or "unknown")
        step.error_class = ERROR_CLASSES.get(kind, "ToolError")
        detail = error.get("message")
        step.error = f"{kind}: {one_line(detail)}" if isinstance(detail, str) and detail.strip() else kind
        if step.error_class == "Timeout":
            step.outcome = "timeout"
        step.extra["tool_error_type"] = kind


def _sample(
    sample: dict[str, Any],
    pointer: str,
    origin: Origin,
    model: str | None,
    bad: list[BadLine],
    member: str | None = None,
) -> list[dict[str, Any]]:
    sample_id = sample.get("id")
    epoch = sample.get("epoch", 1)
    builder = EpisodeBuilder(origin, f"{sample_id}-epoch-{epoch}", task_id=str(sample_id), member=member)
    raw_input = sample.get("input")
    task = raw_input if isinstance(raw_input, str) else text_of([text_of(m.get("content")) for m in raw_input or []])
    builder.start(task=task, model=model, pointer=pointer or "/", epoch=epoch, target=sample.get("target"))
    messages = sample.get("messages") if isinstance(sample.get("messages"), list) else []
    assert isinstance(messages, list)
    times = _tool_event_times(sample.get("events"))
    answered: dict[str, int] = {}
    for index, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            if isinstance(call_id, str) and call_id not in answered:
                answered[call_id] = index
    called: set[str] = set()
    prompt_chars = 0
    for index, message in enumerate(messages):
        where = f"{pointer}/messages/{index}"
        if not isinstance(message, dict):
            where_file = f"{origin.file}!{member}" if member else origin.file
            bad.append(BadLine(file=where_file, line=0, reason=f"{where}: expected an object"))
            continue
        role = message.get("role")
        content = text_of(message.get("content"))
        if role == "assistant":
            calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
            for call in calls:
                call_id = call.get("id")
                function = str(call.get("function") or "?")
                arguments = call.get("arguments")
                step = Step(
                    action={"tool": function, "args": arguments if isinstance(arguments, dict) else {}},
                    raw_output=content or None,
                    context_chars=prompt_chars,
                    pointer=where,
                    ts=times.get(call_id) if isinstance(call_id, str) else None,
                )
                parse_error = call.get("parse_error")
                if isinstance(parse_error, str) and parse_error:
                    step.schema_error = parse_error
                    step.error_class, step.error = "SchemaViolation", one_line(parse_error)
                if isinstance(call_id, str):
                    called.add(call_id)
                    if call_id in answered:
                        _apply_result(step, messages[answered[call_id]])
                builder.tick(step)
            if not calls:
                reply = next(
                    (m for m in messages[index + 1 :] if isinstance(m, dict) and m.get("role") in ("user",)), None
                )
                builder.tick(respond_step(content, reply, prompt_chars, where))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in called:
                step = Step(
                    action={"tool": str(message.get("function") or "?"), "args": {}},
                    context_chars=prompt_chars,
                    pointer=where,
                    ts=times.get(call_id) if isinstance(call_id, str) else None,
                    extra={"call_unknown": True},
                )
                _apply_result(step, message)
                builder.tick(step)
        prompt_chars += len(content)
    error = sample.get("error")
    limit = sample.get("limit")
    if isinstance(error, dict):
        builder.end("death", reason=one_line(str(error.get("message") or "error")), error_class="Fatal")
    elif isinstance(limit, dict):
        builder.end("timeout", reason=f"{limit.get('type', 'unknown')} limit reached", error_class="LimitExceeded")
    else:
        solved = _score_solved(sample.get("scores"))
        if solved is None:
            builder.end("success", reason="completed (no score in the log)")
        else:
            builder.end("success" if solved else "failure", solved=solved, reason="scored")
    return builder.records


def _model_of(header: dict[str, Any]) -> str | None:
    spec = header.get("eval")
    model = spec.get("model") if isinstance(spec, dict) else None
    return model if isinstance(model, str) else None


def convert(path: Path, doc: Any, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    bad: list[BadLine] = []
    records: list[dict[str, Any]] = []
    model = _model_of(doc)
    for index, sample in enumerate(doc.get("samples") or []):
        if isinstance(sample, dict):
            records.extend(_sample(sample, f"/samples/{index}", origin, model, bad))
        else:
            bad.append(BadLine(file=origin.file, line=0, reason=f"/samples/{index}: expected an object"))
    return records, bad


def _sample_order(name: str) -> tuple[int, str, int]:
    match = _SAMPLE_NAME.match(name)
    if match is None:
        return (1, name, 0)
    sample_id, epoch = match.group(1), int(match.group(2))
    return (0, sample_id.zfill(12) if sample_id.isdigit() else sample_id, epoch)


def convert_zip(path: Path, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """Read a ``.eval`` archive member by member; a damaged member is reported (``file!member:line``) and skipped."""
    bad: list[BadLine] = []
    records: list[dict[str, Any]] = []
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()

        def load(name: str) -> Any:
            try:
                size = archive.getinfo(name).file_size
                if size > MEMBER_LIMIT_BYTES:
                    bad.append(
                        BadLine(
                            file=f"{origin.file}!{name}",
                            line=0,
                            reason=f"member of {size} bytes is larger than {MEMBER_LIMIT_BYTES}; skipped",
                        )
                    )
                    return None
                return orjson.loads(archive.read(name))
            except orjson.JSONDecodeError as exc:
                bad.append(BadLine(file=f"{origin.file}!{name}", line=exc.lineno, reason=f"invalid JSON: {exc.msg}"))
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                bad.append(BadLine(file=f"{origin.file}!{name}", line=0, reason=f"unreadable member: {exc}"))
            return None

        header: Any = None
        for candidate in ("header.json", "_journal/start.json", "start.json"):
            if candidate in names:
                header = load(candidate)
                if isinstance(header, dict):
                    break
        model = _model_of(header) if isinstance(header, dict) else None
        for name in sorted((n for n in names if _SAMPLE_NAME.match(n)), key=_sample_order):
            sample = load(name)
            if isinstance(sample, dict):
                records.extend(_sample(sample, "", origin, model, bad, member=name))
            elif sample is not None:
                bad.append(BadLine(file=f"{origin.file}!{name}", line=1, reason="expected a sample object"))
    return records, bad
