"""What every importer shares: building canonical records with provenance, and reading failures out of text.

Foreign formats rarely say "this step failed" in a field; SWE-agent only shows it in the observation text. The
classifier below reads the few markers that are unambiguous (a Python traceback, an editor's syntax-error refusal,
"No such file or directory", a non-zero exit code) and leaves everything else as success, so that a file listing
that happens to contain the word "Error" is not counted as a failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.traces.schema import SCHEMA_VERSION

OBSERVATION_LIMIT = 8_000
TASK_LIMIT = 8_000
MESSAGE_LIMIT = 300

_EXCEPTION_LINE = re.compile(
    r"^\s*((?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)|StopIteration))\b(?::\s*(.*))?$",
    re.MULTILINE,
)
_SWE_SYNTAX_DETAIL = re.compile(r"^- (E\d+ .+)$", re.MULTILINE)
_PATH_LINE = re.compile(r"^(\S+:\d+)\s*$", re.MULTILINE)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Origin:
    """Where imported records come from; copied into every record's ``source``."""

    format: str
    file: str
    sha256: str
    fallback_ts: float

    @property
    def run_id(self) -> str:
        return f"{self.format}:{Path(self.file).name}"


@dataclass
class Step:
    """One agent step in the middle of an import, before it becomes a canonical tick."""

    action: dict[str, Any] | None
    raw_output: str | None = None
    observation: str | None = None
    error_class: str | None = None
    error: str | None = None
    outcome: str | None = None
    schema_error: str | None = None
    context_chars: int | None = None
    ts: float | None = None
    latency_s: float | None = None
    actor: str = "model"
    line: int | None = None
    pointer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fail(self, failure: tuple[str, str]) -> None:
        """Record ``(error_class, message)`` as the step's error; a ``Timeout`` also makes its outcome ``timeout``."""
        self.error_class, self.error = failure
        if self.error_class == "Timeout":
            self.outcome = "timeout"


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """The first non-empty line of ``text``, whitespace collapsed and cut to ``limit``."""
    for line in text.split("\n"):
        if line.strip():
            return _SPACES.sub(" ", line.strip())[:limit]
    return ""


def cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"\n…[cut {len(text) - limit} chars]"


def parse_timestamp(value: Any) -> float | None:
    """UNIX seconds from a number (seconds or milliseconds) or an ISO 8601 string; None when absent or unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def text_of(content: Any) -> str:
    """Plain text of a chat message content: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return "" if content is None else str(content)


def classify_output(text: str | None, exit_code: int | None = None) -> tuple[str, str] | None:
    """``(error_class, message)`` when the output of a tool shows a failure, else None.

    With an exit code, zero means success whatever the text says and non-zero means failure (classified by text
    when a marker says more). Without one, only unambiguous markers count.
    """
    if exit_code == 0:
        return None
    text = text or ""
    head = text[:2000]
    if "proposed edit has introduced new syntax error" in head:
        detail = _SWE_SYNTAX_DETAIL.search(text) or _PATH_LINE.search(text)
        where = f": {detail.group(1)}" if detail else ""
        return "SyntaxError", f"proposed edit introduced a syntax error{where}"
    if "No exact match found" in head[:300]:
        return "NotFound", one_line(text).strip("[]")
    traceback_at = text.find("Traceback (most recent call last)")
    if traceback_at >= 0:
        matches = list(_EXCEPTION_LINE.finditer(text, traceback_at))
        if matches:
            found = matches[-1]
            return found.group(2), one_line(found.group(0))
        return "PythonException", "Traceback without a final exception line"
    first = one_line(text)
    lowered = first.lower()
    if "no such file or directory" in lowered or "command not found" in lowered or "does not exist" in lowered:
        return "NotFound", first
    if re.match(r"^(file|directory) .+ not found", lowered):
        return "NotFound", first
    if "permission denied" in lowered:
        return "PermissionDenied", first
    if "timed out" in lowered or lowered.startswith("timeout"):
        return "Timeout", first
    if lowered.startswith(("error:", "error ", "fatal:")):
        return "ToolError", first
    if exit_code is not None:
        return "ToolError", first or f"exit code {exit_code}"
    return None


def trajectory_name(path: Path) -> str:
    """The episode name of a trajectory file: its name without ``.traj.json``, ``.traj`` or ``.json``."""
    name = path.name
    for suffix in (".traj.json", ".traj", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def respond_step(content: str, reply: dict[str, Any] | None, prompt_chars: int | None, pointer: str) -> Step:
    """A model turn without tool calls: a ``respond`` action, observed by the user message that answered it."""
    return Step(
        action={"tool": "respond", "args": {"content": content}},
        raw_output=content,
        observation=text_of(reply.get("content")) if reply is not None else None,
        context_chars=prompt_chars,
        pointer=pointer,
    )


class EpisodeBuilder:
    """Turns the steps of one foreign episode into canonical ``episode_start``/``tick``/``episode_end`` dicts.

    ``member`` names the part of an archive the episode came from (an inspect_ai ``.eval`` is a ZIP).

    Progress is derived the way the canonical writer means it: a successful tick that showed something new.
    Records without a real timestamp get the source file's modification time and ``ts_estimated: true`` so that
    analysis does not report seconds it cannot know.
    """

    def __init__(self, origin: Origin, episode: str, *, task_id: str | None = None, member: str | None = None) -> None:
        self.origin = origin
        self.member = member
        self.episode = episode
        self.task_id = task_id
        self.records: list[dict[str, Any]] = []
        self.tick_no = 0
        self._seen: set[int] = set()
        self._last_ts: float | None = None

    def _base(self, kind: str, ts: float | None, line: int | None, pointer: str | None) -> dict[str, Any]:
        source: dict[str, Any] = {
            "format": self.origin.format,
            "file": self.origin.file,
            "line": line,
            "sha256": self.origin.sha256,
        }
        if self.member is not None:
            source["member"] = self.member
        if pointer is not None:
            source["pointer"] = pointer
        record: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "kind": kind,
            "run_id": self.origin.run_id,
            "episode": self.episode,
            "task_id": self.task_id,
            "ts": ts if ts is not None else self.origin.fallback_ts,
            "source": source,
        }
        if ts is None:
            record["ts_estimated"] = True
        else:
            self._last_ts = ts
        return record

    def start(
        self,
        *,
        task: str | None = None,
        model: str | None = None,
        ts: float | None = None,
        line: int | None = None,
        pointer: str | None = None,
        **extra: Any,
    ) -> None:
        record = self._base("episode_start", ts, line, pointer)
        record.update({"model": model, "task": cut(task, TASK_LIMIT), "traps": []})
        record.update(extra)
        self.records.append(record)

    def tick(self, step: Step) -> None:
        record = self._base("tick", step.ts, step.line, step.pointer)
        failed = step.error_class is not None
        outcome = step.outcome or ("error" if failed else "ok")
        observation = step.observation
        progress = False
        if not failed:
            digest = hash(observation or "")
            progress = digest not in self._seen
            self._seen.add(digest)
        record.update(
            {
                "tick": self.tick_no,
                "actor": step.actor,
                "latency_s": step.latency_s,
                "prompt_tokens": None,
                "completion_tokens": None,
                "context_chars": step.context_chars if step.context_chars is not None else 0,
                "context": None,
                "raw_output": step.raw_output,
                "action": step.action,
                "schema_error": step.schema_error,
                "outcome": outcome,
                "error_class": step.error_class,
                "error": step.error,
                "observation": cut(observation, OBSERVATION_LIMIT),
                "observation_chars": len(observation) if observation is not None else 0,
                "trap": None,
                "chain_id": None,
                "chain_role": None,
                "recovery": None,
                "progress": progress,
            }
        )
        if step.context_chars is None:
            del record["context_chars"]  # unknown; analysis takes an absent or zero size as no sample
        record.update(step.extra)
        self.records.append(record)
        self.tick_no += 1

    def end(
        self,
        outcome: str,
        *,
        solved: bool = False,
        reason: str | None = None,
        error_class: str | None = None,
        ts: float | None = None,
        line: int | None = None,
        pointer: str | None = None,
        **extra: Any,
    ) -> None:
        record = self._base("episode_end", ts if ts is not None else self._last_ts, line, pointer)
        record.update(
            {
                "outcome": outcome,
                "ticks": self.tick_no,
                "solved": solved,
                "reason": reason,
                "error_class": error_class,
                "duration_s": None,
            }
        )
        record.update(extra)
        self.records.append(record)
