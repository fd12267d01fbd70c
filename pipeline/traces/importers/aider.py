"""Aider chat histories (``.aider.chat.history.md``): one Markdown file per project, appended to by every run.

Each run begins with ``# aider chat started at YYYY-MM-DD HH:MM:SS``; that line splits the file into sessions, one
episode each. Inside a session, lines starting ``#### `` are what the user typed, lines starting ``> `` are what
aider printed (tool output, warnings and errors alike), and everything else is the model's reply.

A model reply is one tick; its observation is the aider output that follows it. When aider cannot apply the reply
it tells the model what went wrong and asks again without a new ``####`` line (a "reflection"), so a reply that
follows aider output directly is a retry of the same request. Failures, read from aider's output:

* ``SEARCH/REPLACE block failed to match`` is ``EditFailed``; "The LLM did not conform to the edit format" without a
  failed match (a malformed edit block) is a ``SchemaViolation``;
* ``Unexpected error: litellm.…`` / "APIConnectionError" / "InternalServerError" / "RateLimitError" (the model call
  failed; no reply) is ``ConnectionError``; a context-window message is ``ContextOverflow``;
* lint or test failures aider offers to fix ("Attempt to fix lint errors?") are ``LintError`` / ``CheckFailed``;
* ``^C again to exit`` (the user stopped the reply) is ``Interrupted``;
* "Only N reflections allowed, stopping." is ``ReflectionLimit``.

``^C KeyboardInterrupt`` at the end of a session ends it ``aborted``; sessions are not graded otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.fsio import open_regular
from pipeline.traces.importers._common import EpisodeBuilder, Origin, Step, one_line
from pipeline.traces.reader import BadLine

FORMAT = "aider"

HEADER = "# aider chat started at"
_HEADER_BYTES = HEADER.encode()
_MAX_LINE_CHARS = 1 << 20
_MODEL = re.compile(r"^Models?: (\S+)")


def sniff_text(head: bytes) -> bool:
    """Whether the start of a file is an aider chat history."""
    for raw in head.split(b"\n")[:200]:
        if raw.startswith(_HEADER_BYTES):
            return True
    return False


@dataclass
class _Block:
    kind: str  # "user", "tool" or "model"
    line: int
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip("\n")


def classify(output: str) -> tuple[str, str] | None:
    """``(error_class, message)`` when aider's output after a reply (or instead of one) shows a failure."""
    if "failed to match" in output and "SEARCH/REPLACE" in output:
        found = re.search(r"SearchReplaceNoExactMatch: (.*)", output)
        return "EditFailed", one_line(found.group(1) if found else "SEARCH/REPLACE block failed to match")
    if "did not conform to the edit format" in output:
        found = re.search(r"^\^\^\^ (.*)$", output, re.MULTILINE)
        return "SchemaViolation", one_line(found.group(1) if found else "the LLM did not conform to the edit format")
    for marker in ("litellm.", "APIConnectionError", "InternalServerError", "RateLimitError", "APIError"):
        at = output.find(marker)
        if at >= 0:
            start = output.rfind("\n", 0, at) + 1
            lowered = output.lower()
            if "context window" in lowered or "context length" in lowered or "too many tokens" in lowered:
                return "ContextOverflow", one_line(output[start:])
            return "ConnectionError", one_line(output[start:])
    lowered = output.lower()
    if ("exceeds the" in lowered and "token limit" in lowered) or "hit a token limit" in lowered:
        at = lowered.find("token limit")
        start = output.rfind("\n", 0, at) + 1
        return "ContextOverflow", one_line(output[start:])
    if "reflections allowed, stopping" in output:
        found = re.search(r"Only \d+ reflections allowed, stopping\.?", output)
        return "ReflectionLimit", found.group(0) if found else "reflection limit reached"
    if "Attempt to fix lint errors?" in output:
        return "LintError", "lint errors after the edit"
    if "Attempt to fix test errors?" in output:
        return "CheckFailed", "tests failed after the edit"
    if "^C again to exit" in output:
        return "Interrupted", "reply interrupted by the user (^C)"
    return None


def _blocks(lines: list[tuple[int, str]]) -> list[_Block]:
    blocks: list[_Block] = []
    for number, raw in lines:
        line = raw.rstrip("\n").rstrip("\r")
        if line.startswith("#### ") or line == "####":
            kind, body = "user", line[5:].rstrip()
        elif line.startswith("> ") or line == ">":
            kind, body = "tool", line[2:].rstrip()
        else:
            kind, body = "model", line
        if blocks and blocks[-1].kind == kind:
            blocks[-1].lines.append(body)
        elif kind == "model" and not body.strip():
            if blocks and blocks[-1].kind == "model":
                blocks[-1].lines.append(body)
            continue  # blank lines between blocks
        else:
            blocks.append(_Block(kind, number, [body]))
    return [b for b in blocks if b.text.strip()]


def _session_records(
    origin: Origin, header: str | None, header_line: int, lines: list[tuple[int, str]], index: int
) -> list[dict[str, Any]]:
    started: float | None = None
    if header is not None:
        stamp = header[len(HEADER) :].strip()
        try:
            started = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timestamp()
        except ValueError:
            started = None
    name = f"session-{index}" + (f" {header[len(HEADER) :].strip()}" if header else "")
    builder = EpisodeBuilder(origin, name, task_id=None)
    blocks = _blocks(lines)
    task: str | None = None
    model: str | None = None
    steps: list[Step] = []
    chars = 0
    last_tool = ""
    pending_user = False
    for i, block in enumerate(blocks):
        text = block.text
        if block.kind == "user":
            if not text.lstrip().startswith("/") and task is None:
                task = text
            pending_user = not text.lstrip().startswith("/")
            chars += len(text)
            continue
        if block.kind == "tool":
            last_tool = text
            for tool_line in block.lines:
                found = _MODEL.match(tool_line)
                if found and model is None:
                    model = found.group(1)
            failure = classify(text)
            previous = blocks[i - 1] if i else None
            if previous is not None and previous.kind == "model" and steps and steps[-1].line == previous.line:
                step = steps[-1]
                step.observation = text
                if failure is not None:
                    step.error_class, step.error = failure
            elif pending_user and failure is not None and failure[0] in ("ConnectionError", "ContextOverflow"):
                # the model call failed before any reply: a tick without output
                steps.append(
                    Step(
                        action=None,
                        observation=text,
                        error_class=failure[0],
                        error=failure[1],
                        context_chars=chars,
                        line=block.line,
                    )
                )
            elif pending_user and failure is not None and failure[0] == "Interrupted":
                steps.append(
                    Step(action=None, observation=text, error_class=failure[0], error=failure[1], line=block.line)
                )
            chars += len(text)
            pending_user = False
            continue
        # a model reply: a retry when it follows aider's output rather than the user's words
        retry = i > 0 and blocks[i - 1].kind == "tool" and bool(steps)
        step = Step(
            action={"tool": "reply", "args": {"content": text}},
            raw_output=text,
            context_chars=chars,
            line=block.line,
        )
        if retry:
            step.extra["reflection"] = True
        steps.append(step)
        chars += len(text)
        pending_user = False
    builder.start(task=task, model=model, ts=started, line=header_line if header is not None else None)
    for step in steps:
        builder.tick(step)
    end_line = lines[-1][0] if lines else header_line
    if "^C KeyboardInterrupt" in last_tool and blocks and blocks[-1].kind == "tool":
        builder.end("aborted", reason="session interrupted (^C)", line=end_line)
    elif steps and steps[-1].error_class is not None:
        builder.end("failure", reason=f"last reply failed: {steps[-1].error}", line=end_line)
    else:
        builder.end("success", reason="session ended; not graded", line=end_line)
    return builder.records


def _lines(path: Path, bad: list[BadLine]) -> Iterator[tuple[int, str]]:
    with open_regular(path) as fh:
        for number, raw in enumerate(fh, 1):
            if len(raw) > _MAX_LINE_CHARS:
                bad.append(BadLine(file=str(path), line=number, reason=f"line too long ({len(raw)} bytes); skipped"))
                continue
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.append(BadLine(file=str(path), line=number, reason=f"invalid UTF-8 at byte {exc.start}; decoded"))
                yield number, raw.decode("utf-8", errors="replace")


def convert_path(path: Path, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """One episode per session; read line by line, one session in memory at a time."""
    bad: list[BadLine] = []
    records: list[dict[str, Any]] = []
    header: str | None = None
    header_line = 0
    lines: list[tuple[int, str]] = []
    index = 0
    for number, line in _lines(path, bad):
        if line.startswith(HEADER):
            if header is not None or any(text.strip() for _, text in lines):
                records.extend(_session_records(origin, header, header_line, lines, index))
                index += 1
            header, header_line, lines = line.strip(), number, []
            continue
        lines.append((number, line))
    if header is not None or any(text.strip() for _, text in lines):
        records.extend(_session_records(origin, header, header_line, lines, index))
    if header is None and not records:
        bad.append(BadLine(file=origin.file, line=1, reason=f"no '{HEADER}' line: not an aider chat history"))
    return records, bad
