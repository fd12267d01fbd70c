"""Definitions shared by the analyzer and the viewer's summary: outcomes and error classes that count as failures,
and the normalized action *verb* (``action_verb``) that thrash and derived chains are keyed by.

Free of pydantic on purpose: the viewer imports this at start-up (``pipeline.traces.summary``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from pipeline.traces.records import TraceRecord

DEFAULT_DEADLOCK_WINDOW = 8
DEFAULT_THRASH_MIN = 3
OSCILLATION_MIN = 4
LAST_TICKS = 8
ERROR_MESSAGE_CHARS = 160
LABEL_CHARS = 80
CONTEXT_LIST_TICKS = 1 << 20  # per-tick-number context sums live in lists up to here, in dicts beyond
INVALID_VERB = "<invalid>"

# Episode outcomes that are deaths. A ``timeout`` (ticks, budget or time spent without an answer) is not one: the
# agent was still alive when it was stopped, as the workload's own reports count it too.
DEATH_OUTCOMES = frozenset({"death"})
FAILING_TICK_OUTCOMES = frozenset({"error", "timeout", "death"})
# Error classes that say the world refused (a lock, a missing thing, a tool that keeps saying no), as opposed to
# the agent's own output being wrong; the same one repeated means the agent is stuck behind it.
PRECONDITION_CLASSES = frozenset(
    {"Deadlock", "NotFound", "ToolError", "Timeout", "ConnectionError", "PermissionDenied"}
)
SHELL_TOOLS = frozenset(
    {"bash", "sh", "shell", "execute_bash", "run", "cmd", "terminal", "execute_command", "run_command"}
)
CODE_TOOLS = frozenset({"ipython", "python", "run_ipython", "execute_ipython_cell", "jupyter"})
_NAME_KEYS = ("tool", "act", "name", "function", "action", "type")  # "act": the reference workload's actions
_OTHER_NAME_KEYS = _NAME_KEYS[1:]  # after "tool", the common one (``_tool_name`` looks it up first)
_ARGS_KEYS = ("args", "arguments", "params", "input", "kwargs")

# O(1) context bound: after warm-up (the second half of the tick range) the fitted growth across that half must
# stay under this share of its mean size, and the late quarter must not exceed the early quarter by this ratio.
BOUND_LATE_GROWTH_SHARE = 0.10
BOUND_LATE_EARLY_RATIO = 2.0
BOUND_MIN_SPAN = 8

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SHELL_SPLIT = re.compile(r"&&|\|\||;|\|")
_CALL = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\s*=\s*)?([A-Za-z_][\w.]*)\s*\(")
_SPACES = re.compile(r"\s+")
_COMMAND_PREFIXES = frozenset({"sudo", "env", "time", "nohup", "exec", "command"})


def _action_args(action: dict[str, Any]) -> dict[str, Any]:
    for key in _ARGS_KEYS:
        value = action.get(key)
        if isinstance(value, dict):
            return value
    return action


def _command_word(command: str) -> str:
    """The program a shell command line runs: ``cd x && FOO=1 sudo python3 a.py`` -> ``python3``."""
    first_line = command.strip().split("\n", 1)[0]
    saw_cd = False
    for segment in _SHELL_SPLIT.split(first_line):
        words = segment.split()
        while words and (_ASSIGNMENT.match(words[0]) or words[0] in _COMMAND_PREFIXES):
            words.pop(0)
        if not words:
            continue
        if words[0] == "cd":
            saw_cd = True
            continue
        return words[0].rsplit("/", 1)[-1]
    return "cd" if saw_cd else ""


def _tool_name(action: dict[str, Any]) -> str | None:
    tool = action.get("tool")
    if type(tool) is str and tool:
        return tool
    for key in _OTHER_NAME_KEYS:
        tool = action.get(key)
        if isinstance(tool, str) and tool:
            return tool
    return None


def action_verb(action: Any) -> str | None:
    """The normalized action: the tool name, refined by what a shell or code tool ran (``bash:python3``,
    ``ipython:edit_file_by_replace``) or by a one-word sub-command (``str_replace_editor:view``).

    Arguments are left out on purpose (see the module docstring). None when there is no action.
    """
    if not isinstance(action, dict):
        return None
    tool = _tool_name(action)
    if tool is None:
        return "?"
    args = _action_args(action)
    if tool in SHELL_TOOLS:
        command = args.get("command", args.get("cmd"))
        if isinstance(command, str):
            word = _command_word(command)
            return f"{tool}:{word}" if word else tool
        return tool
    if tool in CODE_TOOLS:
        code = args.get("code", args.get("source"))
        if isinstance(code, str):
            for line in code.split("\n"):
                if line.strip():
                    match = _CALL.match(line)
                    return f"{tool}:{match.group(1)}" if match else tool
        return tool
    sub = args.get("command")
    if isinstance(sub, str) and sub and " " not in sub and len(sub) <= 40:
        return f"{tool}:{sub}"
    return tool


def _label(action: dict[str, Any]) -> str:
    """A short readable form of an exact action (verb and arguments) for reports."""
    verb = action_verb(action) or "?"
    args = _action_args(action)
    shown = {k: v for k, v in args.items() if k not in _NAME_KEYS} if args is action else args
    text = _SPACES.sub(" ", orjson.dumps(shown, default=str).decode()) if shown else ""
    label = f"{verb} {text}".strip()
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _error_message(obj: dict[str, Any] | TraceRecord) -> str:
    """A short, comparable statement of a failure: the record's ``error`` (importers), its schema error, or the
    first non-empty line of the observation."""
    for key in ("error", "schema_error"):
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:ERROR_MESSAGE_CHARS]
    observation = obj.get("observation")
    if isinstance(observation, str):
        for line in observation.split("\n"):
            if line.strip():
                return " ".join(line.split())[:ERROR_MESSAGE_CHARS]
    return ""
