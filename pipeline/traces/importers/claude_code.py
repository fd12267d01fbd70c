"""Claude Code sessions: ``~/.claude/projects/<project-slug>/<session-id>.jsonl``, and the subagent transcripts
beside them (``agent-<id>.jsonl`` in older versions, ``<session-id>/subagents/agent-<id>.jsonl`` in newer ones;
their lines carry ``isSidechain: true`` and ``agentId``).

One JSON object per line with ``type``: ``user`` and ``assistant`` lines hold an Anthropic API ``message`` whose
content is text or a list of blocks; the other types (``summary``, ``system``, ``file-history-snapshot``, ...) are
bookkeeping. An assistant message is streamed as several lines sharing ``message.id``, one content block each.

A ``tool_use`` block is one tick; its observation is the ``tool_result`` block with the same ``tool_use_id`` in a
later user line. A text answer with no tool call is a ``respond`` tick. Failures:

* ``is_error: true`` on the result: a user rejection ("The user doesn't want to proceed with this tool use") is
  ``ApprovalDenied``; ``[Request interrupted by user for tool use]`` is ``Interrupted``; an
  ``<tool_use_error>InputValidationError`` is a ``SchemaViolation``; ``Sibling tool call errored`` (a parallel call
  not run because another one failed) is ``Cancelled``; a file too large to read ("exceeds maximum allowed size")
  is ``ContextOverflow``; "Exit code N" is a failing command (classified by its text); a timeout notice is
  ``Timeout``; anything else is classified by its text, else ``ToolError``.
* an assistant line with ``isApiErrorMessage`` (``API Error: ...``): the model call failed (``ConnectionError``, or
  ``ContextOverflow`` for "prompt is too long").
* a user text ``[Request interrupted by user]``: the tick waiting for a result is ``Interrupted``; a session whose
  last turn was interrupted ends ``aborted``.

Sessions are not graded: a session that simply ends is ``success`` with ``solved: false``.
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
)
from pipeline.traces.importers._shell import command_failure
from pipeline.traces.reader import BadLine, good_records

FORMAT = "claude-code"

KNOWN_TYPES = frozenset(
    {
        "user",
        "assistant",
        "system",
        "summary",
        "file-history-snapshot",
        "queue-operation",
        "progress",
        "custom-title",
        "tag",
        "agent-name",
        "last-prompt",
        "pr-link",
    }
)
_REJECTED = ("The user doesn't want to proceed with this tool use", "The user doesn't want to take this action")
_INTERRUPTED = "[Request interrupted by user"
_EXIT_CODE = re.compile(r"^(?:Error: )?Exit code (-?\d+)\b")
_TOOL_USE_ERROR = re.compile(r"<tool_use_error>(.*?)(?:</tool_use_error>|$)", re.DOTALL)
# parallel calls are not run once one of them failed; their results say so
_SIBLING_ERRORED = "Sibling tool call errored"
# a Read refused because the file would not fit: "File content (806.5KB) exceeds maximum allowed size (256KB)"
_TOO_LARGE = re.compile(r"exceeds maximum allowed (?:size|tokens)")
_TIMED_OUT = re.compile(r"\btimed out\b|\btimeout\b", re.IGNORECASE)
_SHELL_NAMES = {"Bash": "bash", "BashOutput": "bash_output"}


def sniff_line(obj: dict[str, Any]) -> bool:
    """Whether one decoded line looks like a Claude Code session line."""
    kind = obj.get("type")
    if kind in ("user", "assistant", "system"):
        return "sessionId" in obj and ("uuid" in obj or "parentUuid" in obj)
    if kind == "summary":
        return "leafUuid" in obj
    if kind == "file-history-snapshot":
        return "messageId" in obj or "snapshot" in obj
    return False


def _blocks(message: Any) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        return []
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _result_text(block: dict[str, Any]) -> str:
    return text_of(block.get("content"))


def classify_result(text: str, extra: Any = None) -> tuple[str, str]:
    """``(error_class, message)`` of a tool result marked ``is_error``."""
    stripped = text.strip()
    if stripped.startswith(_REJECTED):
        return "ApprovalDenied", one_line(stripped)
    if stripped.startswith(_INTERRUPTED):
        return "Interrupted", one_line(stripped)
    if isinstance(extra, dict) and extra.get("interrupted") is True:
        return "Interrupted", one_line(stripped) or "interrupted"
    found = _TOOL_USE_ERROR.search(stripped)
    if found:
        inner = found.group(1).strip()
        if inner.startswith("InputValidationError"):
            return "SchemaViolation", one_line(inner)
        if inner.startswith(_SIBLING_ERRORED):
            return "Cancelled", one_line(inner)
        if _TOO_LARGE.search(inner):
            return "ContextOverflow", one_line(inner)
        lowered = inner.lower()
        if inner.startswith("String to replace not found"):
            return "EditFailed", one_line(inner)
        if "not found" in lowered or "does not exist" in lowered:
            return "NotFound", one_line(inner)
        return "ToolError", one_line(inner) or "tool_use_error"
    code = _EXIT_CODE.match(stripped)
    if code:
        body = stripped[code.end() :].lstrip("\n")
        failure = command_failure(body, int(code.group(1)))
        detail = failure[1] if failure else one_line(body)
        message = f"exit code {code.group(1)}: {detail}" if detail else f"exit code {code.group(1)}"
        return (failure[0] if failure else "ToolError"), message
    if _TIMED_OUT.search(stripped[:300]):
        return "Timeout", one_line(stripped)
    failure = classify_output(stripped)
    if failure is not None:
        return failure
    return "ToolError", one_line(stripped) or "tool error (no text)"


def _action(name: str, tool_input: Any) -> dict[str, Any] | None:
    if not isinstance(tool_input, dict):
        return None
    if name in _SHELL_NAMES:
        args = dict(tool_input)
        if name == "Bash" and isinstance(args.get("command"), str):
            args = {"command": args["command"], **{k: v for k, v in args.items() if k != "command"}}
        return {"tool": _SHELL_NAMES[name], "args": args}
    return {"tool": name, "args": tool_input}


def _episode_name(path: Path, first: dict[str, Any] | None) -> str:
    if first is None:
        return path.stem
    session = first.get("sessionId")
    agent = first.get("agentId")
    if isinstance(agent, str) and agent and first.get("isSidechain") is True:
        return f"{session}/agent-{agent}" if isinstance(session, str) else f"agent-{agent}"
    return session if isinstance(session, str) and session else path.stem


def convert_path(path: Path, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """One episode per session file, streamed line by line."""
    bad: list[BadLine] = []
    file = origin.file
    steps: list[Step] = []
    by_id: dict[str, Step] = {}
    waiting: dict[int, Step] = {}  # tool calls still without a result, by identity, oldest first
    respond_open: Step | None = None  # a text answer waiting for the user's next words
    first: dict[str, Any] | None = None
    first_line: int | None = None
    first_ts: float | None = None
    task: str | None = None
    model: str | None = None
    chars = 0
    last_event = "start"
    last_line: int | None = None
    texts_by_message: dict[str, Step] = {}
    dropped: set[int] = set()  # text steps that turned out to be a call's reasoning
    for line, obj in good_records(path, bad.append):
        kind = obj.get("type")
        if not isinstance(kind, str) or kind not in KNOWN_TYPES:
            bad.append(BadLine(file=file, line=line, reason=f"field 'type': unknown record type {kind!r}; skipped"))
            continue
        if kind not in ("user", "assistant"):
            continue
        ts = parse_timestamp(obj.get("timestamp"))
        if first is None:
            first, first_line, first_ts = obj, line, ts
        last_line = line
        message = obj.get("message")
        if not isinstance(message, dict):
            bad.append(BadLine(file=file, line=line, reason=f"field 'message': expected an object in a {kind} line"))
            continue
        blocks = _blocks(message)
        if kind == "assistant":
            if model is None and isinstance(message.get("model"), str) and message["model"] != "<synthetic>":
                model = message["model"]
            text = "\n".join(str(b.get("text")) for b in blocks if b.get("type") == "text" and b.get("text"))
            if obj.get("isApiErrorMessage") is True:
                lowered = text.lower()
                error_class = "ContextOverflow" if "prompt is too long" in lowered else "ConnectionError"
                step = Step(
                    action=None,
                    raw_output=text,
                    error_class=error_class,
                    error=one_line(text) or "API error",
                    context_chars=chars,
                    ts=ts,
                    line=line,
                    actor="model",
                )
                steps.append(step)
                last_event = "api_error"
                chars += len(text)
                continue
            message_id = message.get("id") if isinstance(message.get("id"), str) else None
            for block in blocks:
                btype = block.get("type")
                if btype == "tool_use":
                    name = str(block.get("name") or "?")
                    tool_input = block.get("input")
                    thought = text
                    said = texts_by_message.pop(message_id, None) if message_id is not None else None
                    if said is not None:
                        # the text streamed before the call in the same message is its reasoning, not an answer
                        dropped.add(id(said))
                        thought = said.raw_output or text
                    step = Step(
                        action=_action(name, tool_input),
                        raw_output=thought or None,
                        context_chars=chars,
                        ts=ts,
                        line=line,
                    )
                    if step.action is None:
                        step.schema_error = f"tool_use input is {type(tool_input).__name__}, not an object"
                        step.error_class, step.error = "SchemaViolation", step.schema_error
                    steps.append(step)
                    call_id = block.get("id")
                    if isinstance(call_id, str):
                        by_id[call_id] = step
                    waiting[id(step)] = step
                    respond_open = None
                elif btype == "text" and isinstance(block.get("text"), str) and block["text"].strip():
                    existing = texts_by_message.get(message_id) if message_id is not None else None
                    if existing is not None and existing.action is not None:
                        content = existing.action["args"]["content"] + "\n" + block["text"]
                        existing.action["args"]["content"] = content
                        existing.raw_output = content
                        continue
                    step = Step(
                        action={"tool": "respond", "args": {"content": block["text"]}},
                        raw_output=block["text"],
                        context_chars=chars,
                        ts=ts,
                        line=line,
                    )
                    steps.append(step)
                    respond_open = step
                    if message_id is not None:
                        texts_by_message[message_id] = step
            last_event = "assistant"
            chars += sum(len(str(b.get("text") or b.get("input") or "")) for b in blocks)
            continue
        # a user line: tool results, or words of the user
        spoke: list[str] = []
        for block in blocks:
            btype = block.get("type")
            if btype == "tool_result":
                call_id = block.get("tool_use_id")
                target = by_id.get(call_id) if isinstance(call_id, str) else None
                if target is None:
                    bad.append(
                        BadLine(
                            file=file,
                            line=line,
                            reason=f"field 'tool_use_id': no tool_use with id {call_id!r} before this result",
                        )
                    )
                    continue
                result = _result_text(block)
                target.observation = result
                waiting.pop(id(target), None)
                if block.get("is_error") is True and target.error_class is None:
                    target.fail(classify_result(result, obj.get("toolUseResult")))
                    last_event = "interrupted" if target.error_class == "Interrupted" else "tool_error"
                else:
                    last_event = "tool_result"
                chars += len(result)
            elif btype == "text" and isinstance(block.get("text"), str):
                spoke.append(block["text"])
        words = "\n".join(spoke).strip()
        if not words:
            continue
        chars += len(words)
        if words.startswith(_INTERRUPTED):
            for step in waiting.values():
                if step.error_class is None:
                    step.error_class, step.error = "Interrupted", one_line(words)
            waiting.clear()
            last_event = "interrupted"
            continue
        if obj.get("isMeta") is True or words.startswith(("<command-", "<local-command-", "Caveat:")):
            continue
        if task is None:
            task = words
        elif respond_open is not None and respond_open.observation is None:
            respond_open.observation = words
        respond_open = None
        last_event = "user"
    builder = EpisodeBuilder(origin, _episode_name(path, first), task_id=_episode_name(path, first))
    extra: dict[str, Any] = {}
    if first is not None:
        for key in ("cwd", "gitBranch", "version"):
            if isinstance(first.get(key), str):
                extra[key] = first[key]
        if first.get("isSidechain") is True:
            extra["subagent"] = True
    builder.start(task=task, model=model, ts=first_ts, line=first_line, **extra)
    for step in steps:
        if id(step) not in dropped:
            builder.tick(step)
    if last_event == "interrupted":
        builder.end("aborted", reason="the last turn was interrupted by the user", line=last_line)
    elif last_event == "api_error":
        builder.end("death", reason=steps[-1].error, error_class=steps[-1].error_class, line=last_line)
    elif waiting:
        builder.end("aborted", reason="the last tool call has no result", line=last_line)
    else:
        builder.end("success", reason="session ended; not graded", line=last_line)
    return builder.records, bad
