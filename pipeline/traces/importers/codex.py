"""Codex CLI rollouts: ``~/.codex/sessions/YYYY/MM/DD/rollout-<time>-<uuid>.jsonl``.

Each line is ``{timestamp, type, payload}`` with ``type`` one of ``session_meta`` (first line: id, cwd, cli
version), ``turn_context`` (model, approval and sandbox policy), ``response_item`` (what went to and came from the
model: ``message``, ``reasoning``, ``function_call`` / ``custom_tool_call`` / ``local_shell_call`` and their
``*_output``), ``event_msg`` (what the CLI showed: ``user_message``, ``agent_message``, ``exec_command_end``,
``patch_apply_end``, ``turn_aborted``, ``error``, ``token_count``, ``task_complete``, ...) and ``compacted``; Codex
0.17x adds ``world_state`` and ``token_usage_record`` (read as known, carry no step). Older rollouts have no
wrapper: a first line with ``id`` and ``timestamp``, then bare response items and ``{"record_type": "state"}``.

Each tool call is one tick, answered by the output with the same ``call_id``; an assistant message is a
``respond`` tick. Failures:

* the exit code, from ``exec_command_end.exit_code``, from an output that is JSON ``{"output", "metadata":
  {"exit_code"}}``, or only from the output text (``Exit code: N``, ``Process exited with code N``); non-zero is a
  failure classified by its text;
* a timeout (``command timed out after N milliseconds``, or exit code 124, what ``timeout(1)`` returns) is
  ``Timeout``;
* a sandbox denial (``failed in sandbox``, "sandbox denied", or "Read-only file system" / "Operation not permitted"
  while ``turn_context.sandbox_policy`` is ``read-only`` or ``workspace-write``) is ``SandboxDenied``; a call the
  user or the approval policy rejected (``exec command rejected by user``, ``patch rejected by user``, ``reject
  command — you cannot ask for escalated permissions``) is ``ApprovalDenied``;
* a patch that did not apply (``patch_apply_end.success == false``, ``apply_patch verification failed``, "Failed
  to find expected lines", "Invalid patch") is ``PatchFailed``;
* arguments that are not JSON, or "failed to parse function arguments" / "unsupported call", are
  ``SchemaViolation``;
* ``turn_aborted`` marks the call in flight ``Interrupted``, as does an output ``aborted by user``; an ``error``
  event after the last tick, or a ``task_complete`` with an ``error`` (retries used up), is a death.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from pipeline.traces.importers._codex_output import classify, exit_code_of, output_text
from pipeline.traces.importers._common import (
    EpisodeBuilder,
    Origin,
    Step,
    one_line,
    parse_timestamp,
    text_of,
)
from pipeline.traces.reader import BadLine, iter_records

FORMAT = "codex"

RECORD_TYPES = frozenset({"session_meta", "turn_context", "response_item", "event_msg", "compacted"})
_QUIET_TYPES = frozenset({"world_state", "token_usage_record"})  # Codex 0.17x: state and usage, no step
_ITEM_TYPES = frozenset(
    {
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "local_shell_call",
        "local_shell_call_output",
        "web_search_call",
        "tool_search_call",
        "tool_search_output",
        "image_generation_call",
        "compaction",
        "ghost_snapshot",
        "other",
    }
)
_CALLS = frozenset({"function_call", "custom_tool_call", "local_shell_call"})
_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output", "local_shell_call_output"})
_ENVIRONMENT_PREFIXES = (
    "<environment_context>",
    "<user_instructions>",
    "# AGENTS.md",
    "<permissions",
    "<INSTRUCTIONS>",
)


_OLD_SESSION_KEYS = frozenset({"id", "timestamp", "instructions", "git"})


def sniff_line(obj: dict[str, Any]) -> bool:
    kind = obj.get("type")
    if kind in RECORD_TYPES:
        return isinstance(obj.get("payload"), dict) and "timestamp" in obj
    # an older rollout: its first line is only the session, its second ``{"record_type": "state"}``
    if obj.get("record_type") == "state" and len(obj) <= 2:
        return True
    return "id" in obj and "timestamp" in obj and "instructions" in obj and set(obj) <= _OLD_SESSION_KEYS


def _arguments(item: dict[str, Any]) -> tuple[Any, str | None]:
    kind = item.get("type")
    if kind == "local_shell_call":
        action = item.get("action")
        command = action.get("command") if isinstance(action, dict) else None
        return {"command": command}, None
    if kind == "custom_tool_call":
        return {"input": item.get("input")}, None
    arguments = item.get("arguments")
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments), None
        except orjson.JSONDecodeError as exc:
            return None, f"function call arguments are not JSON: {exc.msg}"
    return arguments, None


def _action(name: str, args: Any) -> dict[str, Any] | None:
    if not isinstance(args, dict):
        return None
    command = args.get("command", args.get("cmd"))
    if name in ("shell", "exec_command", "local_shell", "container.exec", "shell_command") or (
        name == "local_shell_call"
    ):
        if isinstance(command, list):
            parts = [str(p) for p in command]
            # ["bash", "-lc", "cmd"] runs cmd
            command = parts[-1] if len(parts) >= 3 and parts[1] in ("-lc", "-c") else " ".join(parts)
        rest = {k: v for k, v in args.items() if k not in ("command", "cmd")}
        return {"tool": "shell", "args": {"command": str(command or ""), **rest}}
    return {"tool": name, "args": args}


class _Rollout:
    """State of one rollout while its lines stream past."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.steps: list[Step] = []
        self.by_call: dict[str, Step] = {}
        self.waiting: dict[int, Step] = {}  # calls without an output yet, by identity
        self.respond_open: Step | None = None
        self.meta: dict[str, Any] = {}
        self.meta_line: int | None = None
        self.first_ts: float | None = None
        self.task: str | None = None
        self.model: str | None = None
        self.chars = 0
        self.last_event = "start"
        self.last_line: int | None = None
        self.fatal: str | None = None
        self.sandboxed = False

    def item(self, item: dict[str, Any], ts: float | None, line: int, bad: list[BadLine]) -> None:
        kind = item.get("type")
        if kind in _CALLS:
            name = str(item.get("name") or ("local_shell_call" if kind == "local_shell_call" else "?"))
            args, problem = _arguments(item)
            step = Step(action=_action(name, args), context_chars=self.chars, ts=ts, line=line)
            if problem is not None or step.action is None:
                step.schema_error = problem or f"call arguments are {type(args).__name__}, not an object"
                step.error_class, step.error = "SchemaViolation", step.schema_error
                step.action = {"tool": name, "args": {}}  # the call is named even when its arguments are not JSON
                step.extra["raw_arguments"] = item.get("arguments")
            self.steps.append(step)
            call_id = item.get("call_id", item.get("id"))
            if isinstance(call_id, str):
                self.by_call[call_id] = step
            self.waiting[id(step)] = step
            self.respond_open = None
            self.chars += len(str(item.get("arguments") or item.get("input") or ""))
            self.last_event = "call"
        elif kind in _OUTPUTS:
            call_id = item.get("call_id")
            answered = self.by_call.get(call_id) if isinstance(call_id, str) else None
            if answered is None:
                bad.append(
                    BadLine(
                        file=self.origin.file,
                        line=line,
                        reason=f"field 'payload.call_id': no call with id {call_id!r} before this output",
                    )
                )
                return
            output = item.get("output")
            text, code = output_text(output)
            if answered.observation is None:
                answered.observation = text
            self._settle(answered, text, code)
            if isinstance(output, dict) and output.get("success") is False and answered.error_class is None:
                # a structured output that says it failed, without an exit code or a known message
                answered.error_class, answered.error = "ToolError", one_line(text) or "the tool reported a failure"
                self.last_event = "tool_error"
            self.chars += len(text)
        elif kind == "message":
            role = item.get("role")
            text = text_of(item.get("content"))
            self.chars += len(text)
            if role == "assistant" and text.strip():
                step = Step(
                    action={"tool": "respond", "args": {"content": text}},
                    raw_output=text,
                    context_chars=self.chars - len(text),
                    ts=ts,
                    line=line,
                )
                self.steps.append(step)
                self.respond_open = step
                self.last_event = "assistant"
            elif role == "user" and text.strip() and not text.lstrip().startswith(_ENVIRONMENT_PREFIXES):
                self._user_said(text)
        elif kind == "reasoning":
            summary = item.get("summary")
            self.chars += len(text_of(summary)) if isinstance(summary, list) else 0

    def _user_said(self, text: str) -> None:
        if self.task is None:
            self.task = text
        elif self.respond_open is not None and self.respond_open.observation is None:
            self.respond_open.observation = text
        self.respond_open = None
        self.last_event = "user"

    def _settle(self, step: Step, text: str, code: int | None) -> None:
        self.waiting.pop(id(step), None)
        if code is not None:
            step.extra["exit_code"] = code
        if step.error_class is None:
            failure = classify(text, code, self.sandboxed)
            if failure is not None:
                step.fail(failure)
        self.last_event = "tool_error" if step.error_class else "tool_result"

    def event(self, payload: dict[str, Any], line: int) -> None:
        kind = payload.get("type")
        if kind == "user_message":
            message = payload.get("message")
            if isinstance(message, str) and message.strip() and self.task is None:
                self.task = message
        elif kind == "exec_command_end":
            call_id = payload.get("call_id")
            step = self.by_call.get(call_id) if isinstance(call_id, str) else None
            code = exit_code_of(payload.get("exit_code"))
            if step is not None:
                output = payload.get("aggregated_output") or payload.get("formatted_output")
                if not isinstance(output, str):
                    output = "\n".join(str(payload.get(k) or "") for k in ("stdout", "stderr")).strip()
                if step.observation is None:
                    step.observation = output
                step.error_class = None if step.schema_error is None else step.error_class
                step.error = None if step.schema_error is None else step.error
                step.outcome = None
                self._settle(step, output, code)
        elif kind == "patch_apply_end":
            call_id = payload.get("call_id")
            step = self.by_call.get(call_id) if isinstance(call_id, str) else None
            if step is not None and payload.get("success") is False:
                stderr = str(payload.get("stderr") or "")
                self.waiting.pop(id(step), None)
                step.error_class, step.error = "PatchFailed", one_line(stderr) or "patch did not apply"
                step.outcome = None
                self.last_event = "tool_error"
        elif kind == "turn_aborted":
            reason = str(payload.get("reason") or "aborted")
            for step in self.waiting.values():
                if step.error_class is None:
                    step.error_class, step.error = "Interrupted", f"turn aborted: {reason}"
            self.waiting.clear()
            self.last_event = "aborted"
        elif kind in ("error", "stream_error"):
            message = str(payload.get("message") or kind)
            if kind == "error":
                self.fatal = one_line(message)
                self.last_event = "error"
        elif kind == "task_complete":
            error = payload.get("error")
            if isinstance(error, dict) and error.get("message"):  # the turn ended on a model error (retries used up)
                self.fatal, self.last_event = one_line(str(error["message"])), "error"
            else:
                self.last_event = "complete"

    def records(self, path: Path) -> list[dict[str, Any]]:
        session = self.meta.get("id")
        name = str(session) if isinstance(session, str) and session else path.stem
        builder = EpisodeBuilder(self.origin, name, task_id=name)
        extra: dict[str, Any] = {k: self.meta[k] for k in ("cwd", "cli_version", "originator") if k in self.meta}
        if "source" in self.meta:  # "cli", "exec", ...; ``source`` itself is the record's provenance
            extra["session_source"] = self.meta["source"]
        builder.start(task=self.task, model=self.model, ts=self.first_ts, line=self.meta_line, **extra)
        for step in self.steps:
            builder.tick(step)
        if self.last_event == "error" and self.fatal is not None:
            lowered = self.fatal.lower()
            error_class = "ContextOverflow" if "context window" in lowered or "context length" in lowered else "Fatal"
            error_class = "RateLimitError" if "429" in lowered or "rate limit" in lowered else error_class
            builder.end("death", reason=self.fatal, error_class=error_class, line=self.last_line)
        elif self.last_event == "aborted":
            builder.end("aborted", reason="the last turn was aborted", line=self.last_line)
        elif self.waiting:
            builder.end("aborted", reason="the last tool call has no output", line=self.last_line)
        else:
            builder.end("success", reason="session ended; not graded", line=self.last_line)
        return builder.records


def convert_path(path: Path, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """One episode per rollout file, streamed line by line."""
    bad: list[BadLine] = []
    rollout = _Rollout(origin)
    for entry in iter_records(path):
        if isinstance(entry, BadLine):
            bad.append(entry)
            continue
        line, obj = entry
        ts = parse_timestamp(obj.get("timestamp"))
        if rollout.first_ts is None:
            rollout.first_ts = ts
        rollout.last_line = line
        kind = obj.get("type")
        payload = obj.get("payload")
        if kind in _QUIET_TYPES:
            continue
        if kind in RECORD_TYPES:
            if not isinstance(payload, dict):
                reason = f"field 'payload': expected an object in a {kind} record"
                bad.append(BadLine(file=origin.file, line=line, reason=reason))
                continue
            if kind == "session_meta":
                inner = payload.get("meta")
                rollout.meta, rollout.meta_line = (inner if isinstance(inner, dict) else payload), line
            elif kind == "turn_context":
                if isinstance(payload.get("model"), str) and rollout.model is None:
                    rollout.model = payload["model"]
                policy = payload.get("sandbox_policy")
                policy = policy.get("type", policy.get("mode")) if isinstance(policy, dict) else policy
                rollout.sandboxed = policy in ("read-only", "workspace-write")
            elif kind == "response_item":
                rollout.item(payload, ts, line, bad)
            elif kind == "event_msg":
                rollout.event(payload, line)
            continue
        if obj.get("record_type") == "state":
            continue
        if kind in _ITEM_TYPES:  # an older rollout: bare response items
            rollout.item(obj, ts, line, bad)
            continue
        if kind is None and line <= 2 and "id" in obj and "timestamp" in obj:  # an older rollout's first line
            rollout.meta, rollout.meta_line = obj, line
            continue
        bad.append(BadLine(file=origin.file, line=line, reason=f"field 'type': unknown record type {kind!r}; skipped"))
    return rollout.records(path), bad
