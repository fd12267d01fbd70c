"""tau-bench results: a list of ``{task_id, trial, reward, info, traj}`` where ``traj`` is an OpenAI chat with
``tool_calls``. One episode per result.

A tool call is one tick (a model turn with two calls gives two ticks, each with its own result) and its
observation is the tool message answering that call id. A text answer to the user is a ``respond`` tick whose
observation is the user's next message. The environment reports a failing tool call as a result that starts with
``Error:``. ``reward`` 1 is solved; anything else is a failure; an ``error`` in ``info`` is a death.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from pipeline.traces.importers._common import EpisodeBuilder, Origin, Step, one_line, respond_step, text_of
from pipeline.traces.reader import BadLine

FORMAT = "tau-bench"


def _is_result(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("traj"), list) and "reward" in value


def sniff(doc: Any) -> bool:
    if isinstance(doc, list):
        return bool(doc) and all(_is_result(item) for item in doc)
    return _is_result(doc)


def _message_chars(message: dict[str, Any]) -> int:
    size = len(text_of(message.get("content")))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            size += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
    return size


def _tool_result(traj: list[Any], start: int, call_id: Any, used: set[int]) -> tuple[int, dict[str, Any]] | None:
    """The tool message after ``start`` answering ``call_id`` (before the next assistant turn); when ids do not
    match (tau-bench reuses some), the first unused tool message of that span."""
    fallback: tuple[int, dict[str, Any]] | None = None
    for index in range(start + 1, len(traj)):
        message = traj[index]
        if not isinstance(message, dict) or message.get("role") == "assistant":
            break
        if message.get("role") != "tool" or index in used:
            continue
        if message.get("tool_call_id") == call_id:
            return index, message
        if fallback is None:
            fallback = (index, message)
    return fallback


def _next_user(traj: list[Any], start: int) -> dict[str, Any] | None:
    for index in range(start + 1, len(traj)):
        message = traj[index]
        if not isinstance(message, dict) or message.get("role") == "assistant":
            return None
        if message.get("role") == "user":
            return message
    return None


def _episode(result: dict[str, Any], pointer: str, origin: Origin, bad: list[BadLine]) -> list[dict[str, Any]]:
    task_id = str(result.get("task_id"))
    trial = result.get("trial")
    builder = EpisodeBuilder(origin, f"task-{task_id}-trial-{trial}", task_id=task_id)
    info = result.get("info") if isinstance(result.get("info"), dict) else {}
    assert isinstance(info, dict)
    task_info = info.get("task") if isinstance(info.get("task"), dict) else {}
    assert isinstance(task_info, dict)
    instruction = task_info.get("instruction")
    builder.start(task=instruction if isinstance(instruction, str) else None, pointer=pointer, trial=trial)
    traj: list[Any] = result["traj"]
    used: set[int] = set()
    prompt_chars = 0
    for index, message in enumerate(traj):
        if not isinstance(message, dict):
            bad.append(BadLine(file=origin.file, line=0, reason=f"{pointer}/traj/{index}: expected an object"))
            continue
        if message.get("role") == "assistant":
            content = text_of(message.get("content"))
            calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
            for call in calls:
                function = call.get("function") if isinstance(call.get("function"), dict) else {}
                assert isinstance(function, dict)
                name = str(function.get("name") or "?")
                arguments = function.get("arguments")
                step = Step(
                    action=None,
                    raw_output=content or f"{name}({arguments})",
                    context_chars=prompt_chars,
                    pointer=f"{pointer}/traj/{index}",
                )
                try:
                    args = orjson.loads(arguments) if isinstance(arguments, str) else arguments
                except orjson.JSONDecodeError as exc:
                    args = None
                    step.schema_error = f"tool call arguments are not JSON: {exc.msg}"
                    step.error_class, step.error = "SchemaViolation", step.schema_error
                if isinstance(args, dict):
                    step.action = {"tool": name, "args": args}
                found = _tool_result(traj, index, call.get("id"), used)
                if found is not None:
                    used.add(found[0])
                    result_text = text_of(found[1].get("content"))
                    step.observation = result_text
                    if step.error_class is None and result_text.startswith("Error:"):
                        step.error_class, step.error = "ToolError", one_line(result_text)
                builder.tick(step)
            if not calls:
                reply = _next_user(traj, index)
                builder.tick(respond_step(content, reply, prompt_chars, f"{pointer}/traj/{index}"))
        prompt_chars += _message_chars(message)
    reward = result.get("reward")
    error = info.get("error")
    if isinstance(error, str) and error:
        builder.end("death", reason=error, error_class="Fatal", reward=reward)
    elif isinstance(reward, int | float) and reward >= 1:
        builder.end("success", solved=True, reason=f"reward {reward}", reward=reward)
    else:
        builder.end("failure", reason=f"reward {reward}", reward=reward)
    return builder.records


def convert(path: Path, doc: Any, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    bad: list[BadLine] = []
    records: list[dict[str, Any]] = []
    results = doc if isinstance(doc, list) else [doc]
    for index, result in enumerate(results):
        pointer = f"/{index}" if isinstance(doc, list) else ""
        records.extend(_episode(result, pointer, origin, bad))
    return records, bad
