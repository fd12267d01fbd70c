"""SWE-agent ``.traj`` files: ``trajectory[]`` steps (action, observation, response), ``history[]`` (the chat) and
``info`` (``exit_status``, ``submission``, ``model_stats``).

Every SWE-agent action is a command line run in its shell (its own tools such as ``edit`` and ``open`` are shell
functions), so actions become ``{"tool": "bash", "args": {"command": ...}}`` and their verb is the command word.
Failures are only visible in the observation text. The prompt size of a step is the ``query`` it sent when the
file records one (newer versions), else the chat history up to that step's assistant message.

Exit statuses map to episode outcomes the way SWE-agent means them: ``submitted`` is a normal end (not graded in
the file), budget and time limits are ``timeout``, context/format/environment errors are deaths, and
``submitted (exit_x)`` is an autosubmission after ``exit_x`` (the patch exists, but the agent did not finish).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.traces.importers._common import EpisodeBuilder, Origin, Step, classify_output, text_of, trajectory_name
from pipeline.traces.reader import BadLine

FORMAT = "swe-agent"

_EXIT_STATUSES: dict[str, tuple[str, str | None]] = {
    "submitted": ("success", None),
    "exit_cost": ("timeout", "BudgetExhausted"),
    "exit_total_execution_time": ("timeout", "Timeout"),
    "exit_command_timeout": ("timeout", "Timeout"),
    "exit_context": ("death", "ContextOverflow"),
    "exit_format": ("death", "SchemaViolation"),
    "exit_api": ("death", "ConnectionError"),
    "exit_environment_error": ("death", "EnvironmentError"),
    "exit_error": ("death", "Fatal"),
    "early_exit": ("death", "Fatal"),
    "exit_forfeit": ("failure", None),
    "exit_command": ("aborted", None),
}


def sniff(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("trajectory"), list) and ("info" in doc or "history" in doc)


def end_of(exit_status: Any) -> tuple[str, str, str | None]:
    """``(episode outcome, reason, error class)`` for a SWE-agent exit status."""
    if not isinstance(exit_status, str) or not exit_status:
        return "aborted", "no exit status recorded", None
    status = exit_status.strip()
    if status.startswith("submitted (") and status.endswith(")"):
        inner = status[len("submitted (") : -1]
        outcome, error_class = _EXIT_STATUSES.get(inner, ("death", "Fatal"))
        return outcome, f"autosubmitted after {inner}", error_class
    outcome, error_class = _EXIT_STATUSES.get(status, ("death", "Fatal"))
    return outcome, status, error_class


def _history_prompt_sizes(history: list[Any]) -> list[int]:
    """Characters of chat before each (non-demo) assistant message of the history, in order."""
    sizes: list[int] = []
    total = 0
    for message in history:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "assistant" and not message.get("is_demo"):
            sizes.append(total)
        total += len(text_of(message.get("content")))
    return sizes


def _task_of(history: list[Any]) -> str | None:
    for message in history:
        if isinstance(message, dict) and message.get("role") == "user" and not message.get("is_demo"):
            return text_of(message.get("content"))
    return None


def convert(path: Path, doc: dict[str, Any], origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    bad: list[BadLine] = []
    history = doc.get("history") if isinstance(doc.get("history"), list) else []
    assert isinstance(history, list)
    info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
    assert isinstance(info, dict)
    builder = EpisodeBuilder(origin, trajectory_name(path), task_id=trajectory_name(path))
    builder.start(task=_task_of(history), pointer="/history", environment=doc.get("environment"))
    history_sizes = _history_prompt_sizes(history)
    steps = doc["trajectory"]
    use_history = len(history_sizes) == len(steps)
    for index, item in enumerate(steps):
        pointer = f"/trajectory/{index}"
        if not isinstance(item, dict):
            bad.append(BadLine(file=origin.file, line=0, reason=f"{pointer}: expected an object"))
            continue
        command = item.get("action")
        observation = item.get("observation")
        observation_text = observation if isinstance(observation, str) else text_of(observation)
        query = item.get("query")
        if isinstance(query, list) and query:
            context_chars: int | None = sum(len(text_of(m.get("content"))) for m in query if isinstance(m, dict))
        else:
            context_chars = history_sizes[index] if use_history else None
        step = Step(
            action=None,
            raw_output=item.get("response") if isinstance(item.get("response"), str) else None,
            observation=observation_text,
            context_chars=context_chars,
            pointer=pointer,
        )
        if isinstance(command, str) and command.strip():
            step.action = {"tool": "bash", "args": {"command": command.rstrip("\n")}}
            failure = classify_output(observation_text)
            if failure is not None:
                step.fail(failure)
        else:
            step.schema_error = "step has no action"
            step.error_class = "SchemaViolation"
            step.error = step.schema_error
        execution_time = item.get("execution_time")
        if isinstance(execution_time, int | float):
            step.extra["execution_s"] = float(execution_time)
        builder.tick(step)
    outcome, reason, error_class = end_of(info.get("exit_status"))
    builder.end(
        outcome,
        reason=reason,
        error_class=error_class,
        pointer="/info",
        exit_status=info.get("exit_status"),
        submitted=bool(info.get("submission")),
        model_stats=info.get("model_stats"),
    )
    return builder.records, bad
