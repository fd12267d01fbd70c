"""mini-swe-agent trajectories: a bare list of ``{role, content}`` messages (v1), or ``{"messages": [...], "info":
{"exit_status": ...}}`` (later versions).

Each assistant message must hold exactly one bash block; the next user message is the observation, with the exit
code in ``<returncode>N</returncode>`` and the output in ``<output>`` (a message without a return code is a format
error or timeout notice from the agent loop). The submit command (``echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT``)
ends the episode with the diff as observation.
"""

from __future__ import annotations

import re
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
    trajectory_name,
)
from pipeline.traces.reader import BadLine

FORMAT = "mini-swe-agent"

_BASH_BLOCK = re.compile(r"```(?:mswea_bash_command|bash|sh)[ \t]*\n(.*?)\n?```", re.DOTALL)
_RETURN_CODE = re.compile(r"<returncode>\s*(-?\d+)\s*</returncode>")
_OUTPUT = re.compile(r"<output(?:_head|_tail)?>\n?(.*?)</output(?:_head|_tail)?>", re.DOTALL)
_SUBMIT_MARKERS = ("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT", "MINI_SWE_AGENT_FINAL_OUTPUT")
_EXIT_STATUSES = {
    "submitted": ("success", None),
    "limitsexceeded": ("timeout", "BudgetExhausted"),
    "timeexceeded": ("timeout", "Timeout"),
    "repeatedformaterror": ("death", "SchemaViolation"),
    "formaterror": ("death", "SchemaViolation"),
}


def _is_message_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
        and any(m.get("role") == "assistant" for m in value)
    )


def sniff(doc: Any) -> bool:
    if _is_message_list(doc):
        return True
    if isinstance(doc, dict) and _is_message_list(doc.get("messages")):
        fmt = doc.get("trajectory_format")
        info = doc.get("info")
        return (isinstance(fmt, str) and fmt.startswith("mini-swe-agent")) or (
            isinstance(info, dict) and "exit_status" in info
        )
    return False


def _observe(step: Step, text: str) -> None:
    """Fill outcome and error of ``step`` from the user message that answered it."""
    step.observation = text
    code_match = _RETURN_CODE.search(text)
    if code_match is None:
        lowered = text.lower()
        if "timed out" in lowered:
            step.error_class, step.error, step.outcome = "Timeout", one_line(text), "timeout"
        elif "exactly one" in lowered:  # the loop's format-error template
            step.error_class, step.error = "SchemaViolation", one_line(text)
        return
    output_match = _OUTPUT.search(text)
    output = output_match.group(1) if output_match else text
    failure = classify_output(output, int(code_match.group(1)))
    if failure is not None:
        step.error_class, step.error = failure
        step.extra["exit_code"] = int(code_match.group(1))


def convert(path: Path, doc: Any, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    messages: list[dict[str, Any]] = doc if isinstance(doc, list) else doc["messages"]
    info = doc.get("info") if isinstance(doc, dict) and isinstance(doc.get("info"), dict) else None
    base = "/messages" if isinstance(doc, dict) else ""
    name = trajectory_name(path)
    builder = EpisodeBuilder(origin, name, task_id=name)
    task = next((text_of(m.get("content")) for m in messages if m.get("role") == "user"), None)
    builder.start(task=task, pointer=base or "/")
    submitted = False
    pending_submits = False
    prompt_chars = 0
    pending: Step | None = None
    for index, message in enumerate(messages):
        role = message.get("role")
        text = text_of(message.get("content"))
        if role == "assistant":
            if pending is not None:
                builder.tick(pending)
            pending = Step(action=None, raw_output=text, context_chars=prompt_chars, pointer=f"{base}/{index}")
            extra = message.get("extra")
            pending.ts = parse_timestamp(
                message.get("timestamp") or (extra.get("timestamp") if isinstance(extra, dict) else None)
            )
            blocks = _BASH_BLOCK.findall(text)
            pending_submits = False
            if len(blocks) == 1:
                command = blocks[0].strip()
                pending.action = {"tool": "bash", "args": {"command": command}}
                pending_submits = any(marker in command for marker in _SUBMIT_MARKERS)
                submitted = submitted or pending_submits
            else:
                pending.schema_error = f"expected exactly one bash block, found {len(blocks)}"
                pending.error_class, pending.error = "SchemaViolation", pending.schema_error
        elif role in ("user", "tool") and pending is not None:
            if pending.action is not None and not pending_submits:
                _observe(pending, text)
            else:
                pending.observation = text
            builder.tick(pending)
            pending = None
        prompt_chars += len(text)
    if pending is not None:
        builder.tick(pending)
    status = info.get("exit_status") if info is not None else None
    if isinstance(status, str) and status:
        outcome, error_class = _EXIT_STATUSES.get(status.lower(), ("death", "Fatal"))
        builder.end(outcome, reason=status, error_class=error_class, exit_status=status, submitted=submitted)
    elif submitted:
        builder.end("success", reason="submitted", submitted=True)
    else:
        builder.end("aborted", reason="trajectory ends without a submission", submitted=False)
    return builder.records, []
