"""OpenHands event streams, as a list of events (a trajectory export), as JSONL with one event per line, or inside
evaluation/resolver output records (``{"history": [...events], "success"|"test_result", "error", ...}``, one
record per line).

Events are actions (``action`` + ``args``, or, in older streams, the arguments flattened into the event) and
observations (``observation``, ``content``, ``extras``). An observation answers the action whose ``id`` is its
``cause``; older streams have no ids, so it answers the latest action still waiting. Each agent action is one
tick; user messages are not ticks (the first is the task). Failures: ``observation: "error"``, a non-zero exit
code (``extras.exit_code`` or ``extras.metadata.exit_code``), a rejected action, or an editor refusal in the text
("proposed edit has introduced new syntax error(s)", "No exact match found").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.traces.importers._common import (
    EpisodeBuilder,
    Origin,
    Step,
    classify_output,
    one_line,
    parse_timestamp,
    text_of,
)
from pipeline.traces.reader import BadLine, good_records

FORMAT = "openhands"

_EVENT_KEYS = frozenset(
    {"id", "timestamp", "source", "message", "cause", "action", "observation", "args", "extras", "content"}
    | {"llm_metrics", "tool_call_metadata", "timeout", "hidden"}
)
_VOLATILE_ARGS = frozenset(
    {
        "thought",
        "is_confirmed",
        "confirmation_state",
        "action_risk",
        "security_risk",
        "keep_prompt",
        "blocking",
        "hidden",
        "kernel_init_code",
        "images_urls",
        "image_urls",
        "wait_for_response",
        "is_input",
        "include_extra",
    }
)
_NOT_TICKS = frozenset({"system", "change_agent_state", "recall", "condensation", "condensation_request", "null"})


def is_event(value: Any) -> bool:
    return isinstance(value, dict) and ("action" in value or "observation" in value) and "history" not in value


def is_record(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("history"), list)


def sniff(doc: Any) -> bool:
    if is_record(doc):
        return True
    if isinstance(doc, list) and doc:
        return all(is_event(e) for e in doc) or all(is_record(r) for r in doc)
    return False


def _args(event: dict[str, Any]) -> dict[str, Any]:
    args = event.get("args")
    if not isinstance(args, dict):
        args = {k: v for k, v in event.items() if k not in _EVENT_KEYS}
    return args


def _extras(event: dict[str, Any]) -> dict[str, Any]:
    extras = event.get("extras")
    if not isinstance(extras, dict):
        extras = {k: v for k, v in event.items() if k not in _EVENT_KEYS}
    return extras


def _exit_code(extras: dict[str, Any]) -> int | None:
    code = extras.get("exit_code")
    metadata = extras.get("metadata")
    if code is None and isinstance(metadata, dict):
        code = metadata.get("exit_code")
    return code if isinstance(code, int) and not isinstance(code, bool) and code >= 0 else None


def _action(name: str, event: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    if name == "run":
        return {"tool": "bash", "args": {"command": str(args.get("command", ""))}}
    if name == "run_ipython":
        return {"tool": "ipython", "args": {"code": str(args.get("code", ""))}}
    if name == "message":
        return {"tool": "respond", "args": {"content": text_of(args.get("content", event.get("message")))}}
    return {"tool": name, "args": {k: v for k, v in args.items() if k not in _VOLATILE_ARGS}}


def _event_chars(event: dict[str, Any]) -> int:
    """Characters an event adds to the conversation the model sees next."""
    if "observation" in event:
        return len(text_of(event.get("content")))
    args = _args(event)
    thought = len(str(args.get("thought") or ""))
    for value in (args.get("command"), args.get("code"), args.get("content"), event.get("content")):
        if isinstance(value, str):
            return len(value) + thought
    return len(text_of(event.get("message"))) + thought


def _observe(step: Step, event: dict[str, Any]) -> None:
    kind = event.get("observation")
    content = text_of(event.get("content"))
    extras = _extras(event)
    step.observation = content
    failure: tuple[str, str] | None
    if kind == "error":
        failure = classify_output(content) or ("ToolError", one_line(content) or "error observation")
    elif kind == "user_rejected":
        failure = ("ApprovalDenied", one_line(content) or "action rejected by the user")
    else:
        failure = classify_output(content, _exit_code(extras))
    if failure is not None:
        step.fail(failure)


def episode_records(
    events: list[Any],
    name: str,
    origin: Origin,
    *,
    line: int | None,
    pointer: str,
    record: dict[str, Any] | None,
    event_lines: list[int] | None = None,
) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """Canonical records of one OpenHands episode (its events, and its output record when there is one).

    ``line`` is the JSONL line of the output record; ``event_lines`` the line of each event when the events
    themselves are JSONL lines."""
    bad: list[BadLine] = []
    task_id = None
    if record is not None:
        task_id = str(record.get("instance_id") or name)
    builder = EpisodeBuilder(origin, name, task_id=task_id)
    steps: list[Step] = []
    by_id: dict[Any, Step] = {}
    task = record.get("instruction") if record is not None and isinstance(record.get("instruction"), str) else None
    first_ts: float | None = None
    prompt_chars = 0
    finished = False
    died: str | None = None
    user_spoke = False
    for index, event in enumerate(events):
        where = f"{pointer}/{index}"
        event_line = event_lines[index] if event_lines is not None else line
        if not isinstance(event, dict):
            bad.append(BadLine(file=origin.file, line=event_line or 0, reason=f"{where}: expected an event object"))
            continue
        ts = parse_timestamp(event.get("timestamp"))
        if first_ts is None:
            first_ts = ts
        if "observation" in event:
            kind = event.get("observation")
            if kind == "agent_state_changed":
                if _extras(event).get("agent_state") == "error":
                    died = one_line(text_of(event.get("content")) or "agent entered the error state")
            elif kind not in ("null", "recall", "condensation"):
                cause = event.get("cause")
                target = by_id.get(cause) if cause is not None else None
                if target is None:
                    target = next((s for s in reversed(steps) if s.observation is None), None)
                if target is not None and target.observation is None:
                    _observe(target, event)
        elif "action" in event:
            name_of = str(event.get("action"))
            args = _args(event)
            source = event.get("source")
            # Older streams have no source: their first message, before any agent action, is the task.
            is_user = source == "user" or (source is None and name_of == "message" and not user_spoke and not steps)
            if is_user:
                if not user_spoke:
                    user_spoke = True
                    task = task or text_of(args.get("content", event.get("message")))
                else:
                    reply = next((s for s in reversed(steps) if s.observation is None), None)
                    if reply is not None:
                        reply.observation = text_of(args.get("content", event.get("message")))
            elif name_of not in _NOT_TICKS and source in (None, "agent"):
                thought = args.get("thought")
                step = Step(
                    action=_action(name_of, event, args),
                    raw_output=thought if isinstance(thought, str) and thought else None,
                    context_chars=prompt_chars,
                    ts=ts,
                    line=event_line,
                    pointer=where,
                )
                steps.append(step)
                if event.get("id") is not None:
                    by_id[event.get("id")] = step
                if name_of == "finish":
                    finished = True
        prompt_chars += _event_chars(event)
    builder.start(task=task, ts=first_ts, line=line, pointer=pointer)
    for step in steps:
        builder.tick(step)
    error = record.get("error") if record is not None else None
    if isinstance(error, str) and error:
        lowered = error.lower()
        outcome = "timeout" if "maximum iteration" in lowered or "budget" in lowered else "death"
        error_class = "Fatal" if outcome == "death" else "BudgetExhausted"
        builder.end(outcome, reason=one_line(error), error_class=error_class, line=line)
    elif died is not None:
        builder.end("death", reason=died, error_class="Fatal", line=line)
    elif record is not None and isinstance(record.get("success"), bool):
        builder.end("success" if record["success"] else "failure", solved=record["success"], line=line)
    elif finished:
        builder.end("success", reason="finish action (not graded in the file)", line=line)
    else:
        builder.end("aborted", reason="no finish action", line=line)
    return builder.records, bad


def _record_name(record: dict[str, Any], fallback: str) -> str:
    issue = record.get("issue")
    if isinstance(issue, dict) and issue.get("repo") and issue.get("number") is not None:
        return f"{issue.get('owner')}/{issue.get('repo')}#{issue.get('number')}"
    instance = record.get("instance_id")
    return str(instance) if instance else fallback


def convert(path: Path, doc: Any, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """A whole JSON document: an event list, one output record, or a list of output records."""
    if is_record(doc):
        return episode_records(
            doc["history"], _record_name(doc, path.stem), origin, line=None, pointer="/history", record=doc
        )
    if isinstance(doc, list) and doc and all(is_record(r) for r in doc):
        records: list[dict[str, Any]] = []
        bad: list[BadLine] = []
        for index, record in enumerate(doc):
            more, problems = episode_records(
                record["history"],
                _record_name(record, f"{path.stem}-{index}"),
                origin,
                line=None,
                pointer=f"/{index}/history",
                record=record,
            )
            records.extend(more)
            bad.extend(problems)
        return records, bad
    return episode_records(doc, path.stem, origin, line=None, pointer="", record=None)


def convert_jsonl(path: Path, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """JSONL, streamed: output records (one episode per line) or events (one episode for the file)."""
    records: list[dict[str, Any]] = []
    bad: list[BadLine] = []
    events: list[Any] = []
    event_lines: list[int] = []
    for line, obj in good_records(path, bad.append):
        if is_record(obj):
            more, problems = episode_records(
                obj["history"],
                _record_name(obj, f"{path.stem}:{line}"),
                origin,
                line=line,
                pointer="/history",
                record=obj,
            )
            records.extend(more)
            bad.extend(problems)
        elif is_event(obj):
            events.append(obj)
            event_lines.append(line)
        else:
            keys = ", ".join(sorted(obj)[:6])
            bad.append(BadLine(file=origin.file, line=line, reason=f"not an OpenHands event or record (keys: {keys})"))
    if events:
        more, problems = episode_records(
            events, path.stem, origin, line=None, pointer="", record=None, event_lines=event_lines
        )
        records.extend(more)
        bad.extend(problems)
    return records, bad


def first_line_kind(obj: dict[str, Any]) -> bool:
    """Whether a decoded JSONL line looks like OpenHands (an output record or an event)."""
    return is_record(obj) or (is_event(obj) and ("source" in obj or "id" in obj or "extras" in obj or "args" in obj))
