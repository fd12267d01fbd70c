"""The agent's prompt and action format: one definition shared by evaluation and by training data.

A model fine-tuned on prompts that differ from what the harness sends at evaluation (another header, another cut of
the history) learns a format it is never asked for. So the messages are built here only, by ``build_messages``, and
the action the model must emit is the ``Action`` model, written by ``render_action`` (compact JSON, sorted keys).

The prompt is bounded by construction: a fixed system message, the task statement cut to a fixed size, a fixed-size
state line (the summary) and a window of the last few events, each cut to a fixed size. Its size is therefore O(1)
in the number of ticks; ``PromptSettings.unbounded()`` turns the bounds off, for showing that the context check
catches a harness that forgets them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from pipeline.bench.params import ApiStepParams

ActName = Literal["list", "read", "search", "check", "answer"]
ACT_NAMES: tuple[str, ...] = ("list", "read", "search", "check", "answer")
ARG_MAX_CHARS = 200

SYSTEM_PROMPT = (
    "You act in a code sandbox. Reply with one JSON action and nothing else: "
    '{"act":"<list|read|search|check|answer>","arg":"<text>"}\n'
    "list DIR: entries of DIR. read PATH: a file and its line count. search TEXT: lines that contain TEXT. "
    "check PATH: run a check script. answer TEXT: your final answer."
)
REPAIR_INSTRUCTION = "Invalid action: {error}\nReply with only one JSON action."
_STATE_MAX_CHARS = 96
_RESULT_MAX = 24
_ACTION_SHOWN_MAX = ARG_MAX_CHARS + 32


class Action(BaseModel):
    """One agent action: short and regular so that a small model can learn to emit it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    act: ActName
    arg: str = Field(default="", max_length=ARG_MAX_CHARS)


class ActionError(ValueError):
    """The model's output is not a valid action; the message is short enough to show the model."""


def render_action(action: Action) -> str:
    """The exact text a model must emit for ``action`` (compact separators, sorted keys)."""
    return json.dumps(action.model_dump(), separators=(",", ":"), sort_keys=True)


def parse_action(text: str) -> Action:
    """Parse a model's raw output as exactly one JSON action (surrounding whitespace allowed, nothing else)."""
    stripped = text.strip()
    if not stripped:
        raise ActionError("empty output")
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ActionError(f"not JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(data, dict):
        raise ActionError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return Action.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "action"
        raise ActionError(f"field '{where}': {first['msg']}"[:ARG_MAX_CHARS]) from None


def action_json_schema() -> dict[str, Any]:
    schema: dict[str, Any] = Action.model_json_schema()
    schema["title"] = "phasef bench action"
    return schema


@dataclass(frozen=True)
class PromptSettings:
    """The bounds of the prompt. ``None`` means unbounded (only for demonstrating the context check)."""

    window: int | None = 4
    """how many past events the prompt shows"""
    last_chars: int | None = 480
    """size of the most recent observation"""
    history_chars: int | None = 120
    """size of each older event"""
    task_chars: int | None = 240

    @staticmethod
    def unbounded() -> PromptSettings:
        return PromptSettings(window=None, last_chars=None, history_chars=None, task_chars=None)

    @staticmethod
    def of(params: ApiStepParams) -> PromptSettings:
        """The bounds an ``api`` step's params set (unbounded when ``unbounded_context``)."""
        if params.unbounded_context:
            return PromptSettings.unbounded()
        return PromptSettings(
            window=params.window,
            last_chars=params.last_chars,
            history_chars=params.history_chars,
            task_chars=params.task_chars,
        )

    def max_chars(self) -> int | None:
        """An upper bound of ``context_chars`` for any prompt built with these settings, the schema-repair
        retry included (None when unbounded)."""
        if None in (self.window, self.last_chars, self.history_chars, self.task_chars):
            return None
        assert self.window is not None and self.last_chars is not None
        assert self.history_chars is not None and self.task_chars is not None
        action = _ACTION_SHOWN_MAX + len(" -> ") + _RESULT_MAX
        fixed = len(SYSTEM_PROMPT) + len("TASK: ") + self.task_chars + _STATE_MAX_CHARS + len("EARLIER:")
        fixed += len("LAST: ") + len("ACTION?") + 8
        events = max(0, self.window - 1) * (action + 3 + self.history_chars) + action + self.last_chars
        newlines = self.window + 6
        repair = min(self.last_chars, ARG_MAX_CHARS) + len(REPAIR_INSTRUCTION) + ARG_MAX_CHARS
        return fixed + events + newlines + repair


@dataclass(frozen=True)
class PromptState:
    """The fixed-size summary of the episode so far."""

    tick: int
    failures: int
    streak: int
    checks_run: int


@dataclass(frozen=True)
class PromptEvent:
    """One past tick as the prompt shows it."""

    action: str
    """the rendered action, or ``(invalid output)``"""
    result: str
    """``ok``, ``success`` or the error class"""
    observation: str


def _cut(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[: max(0, limit - 3)] + "..."


def _flat(text: str) -> str:
    return text.replace("\r", "").replace("\n", " | ")


def _event_head(event: PromptEvent) -> str:
    return f"{_cut(_flat(event.action), _ACTION_SHOWN_MAX)} -> {_cut(event.result, _RESULT_MAX)}"


def _state_line(state: PromptState) -> str:
    line = f"STATE: tick {state.tick} | failures {state.failures} | streak {state.streak} | checks {state.checks_run}"
    return line[:_STATE_MAX_CHARS]


def build_messages(
    task: str,
    state: PromptState,
    events: Sequence[PromptEvent],
    settings: PromptSettings = PromptSettings(),
) -> list[dict[str, str]]:
    """The chat messages the model sees at one tick (system + user), bounded by ``settings``."""
    shown = list(events) if settings.window is None else list(events)[-settings.window :] if settings.window else []
    lines = [f"TASK: {_cut(_flat(task), settings.task_chars)}", _state_line(state)]
    if shown:
        older, last = shown[:-1], shown[-1]
        if older:
            lines.append("EARLIER:")
            for event in older:
                obs = _cut(_flat(event.observation), settings.history_chars)
                lines.append(f"{_event_head(event)}: {obs}")
        lines.append(f"LAST: {_event_head(last)}")
        lines.append(_cut(last.observation, settings.last_chars))
    else:
        lines.append("LAST: none")
    lines.append("ACTION?")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


def build_repair_messages(
    messages: Sequence[dict[str, str]], bad_output: str, error: str, settings: PromptSettings = PromptSettings()
) -> list[dict[str, str]]:
    """The schema-repair retry: the same prompt, the invalid reply (cut) and the validation error."""
    limit = None if settings.last_chars is None else min(settings.last_chars, ARG_MAX_CHARS)
    return [
        *messages,
        {"role": "assistant", "content": _cut(bad_output, limit)},
        {"role": "user", "content": REPAIR_INSTRUCTION.format(error=_cut(error, ARG_MAX_CHARS))},
    ]


def messages_chars(messages: Sequence[dict[str, str]]) -> int:
    """Size of a prompt in characters (what ``context_chars`` records)."""
    return sum(len(m.get("content", "")) for m in messages)
