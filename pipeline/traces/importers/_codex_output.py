"""Reading a Codex CLI tool output: the text, the exit code it states, and the failure it shows (see ``codex``)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from pipeline.traces.importers._common import one_line, text_of
from pipeline.traces.importers._shell import command_failure

_EXIT_TEXT = re.compile(r"(?:^|\n)(?:Exit code:|Process exited with code)\s*(-?\d+)")
_TIMEOUT_TEXT = re.compile(r"command timed out after \d+|timed out after \d+ ?(?:ms|milliseconds|seconds|s)\b", re.I)
_SANDBOX_TEXT = re.compile(r"failed in sandbox|sandbox (?:denied|error)|denied by (?:the )?sandbox", re.I)
_REJECTED_TEXT = re.compile(
    r"(?:exec command|patch|command) rejected by (?:the )?user|reject command\b|cannot ask for escalated permissions",
    re.I,
)
_SANDBOX_FS_TEXT = re.compile(r"Read-only file system|Operation not permitted")
_PATCH_TEXT = re.compile(
    r"apply_patch verification failed|Failed to find expected lines|Invalid patch|Failed to find context|"
    r"invalid hunk|patch rejected",
    re.I,
)
_TEXT_CLASSES = (
    (re.compile(r"(?<![^\n])aborted by user"), "Interrupted"),  # a line of its own
    (_REJECTED_TEXT, "ApprovalDenied"),
    (_SANDBOX_TEXT, "SandboxDenied"),
    (_TIMEOUT_TEXT, "Timeout"),
    (_PATCH_TEXT, "PatchFailed"),
)
_SCHEMA_TEXT = re.compile(r"failed to parse function arguments|unsupported call|unknown tool", re.I)


def exit_code_of(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def output_text(output: Any) -> tuple[str, int | None]:
    """The text of a tool output and the exit code it states (JSON metadata or a line of the text)."""
    code: int | None = None
    if isinstance(output, dict):
        text = text_of(output.get("content", output.get("output")))
        metadata = output.get("metadata")
        if isinstance(metadata, dict):
            code = exit_code_of(metadata.get("exit_code"))
        return text, code
    text = text_of(output)
    stripped = text.lstrip()
    if stripped.startswith("{") and '"output"' in stripped[:200]:
        try:
            decoded = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict) and "output" in decoded:
            metadata = decoded.get("metadata")
            if isinstance(metadata, dict):
                code = exit_code_of(metadata.get("exit_code"))
            return text_of(decoded.get("output")), code
    found = _EXIT_TEXT.search(text[:2000])
    if found:
        code = int(found.group(1))
    return text, code


def classify(text: str, exit_code: int | None, sandboxed: bool = False) -> tuple[str, str] | None:
    """``(error_class, message)`` when a Codex tool output shows a failure (``sandboxed``: the turn ran in a
    read-only or workspace-write sandbox)."""
    head = text[:4000]
    for pattern, error_class in _TEXT_CLASSES:
        found = pattern.search(head)
        if found:
            return error_class, one_line(head[found.start() :])
    if _SCHEMA_TEXT.search(head[:300]):
        return "SchemaViolation", one_line(head)
    if exit_code == 0:
        return None
    marker = head.find("Output:\n")
    body = head[marker + len("Output:\n") :] if marker >= 0 else head
    if exit_code == 124:
        return "Timeout", f"exit code 124 (timeout): {one_line(body)}" if body.strip() else "exit code 124 (timeout)"
    denied = _SANDBOX_FS_TEXT.search(body) if sandboxed and exit_code is not None else None
    if denied:
        line_start = body.rfind("\n", 0, denied.start()) + 1
        return "SandboxDenied", f"exit code {exit_code}: {one_line(body[line_start:])}"
    failure = command_failure(body, exit_code)
    if failure is None:
        return None
    error_class, message = failure
    if exit_code is not None and not message.startswith("exit code"):
        message = f"exit code {exit_code}: {message}" if message else f"exit code {exit_code}"
    return error_class, message
