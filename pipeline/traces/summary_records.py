"""The viewer summary's own decoder of the common, well-typed trace line, and the caches its hot loop reads.

``SummaryRecord`` holds only the fields the summary reads, each with the type a well-formed trace gives it, so msgspec
checks the types in C while it decodes (a tick out of 32 bits, a boolean where an integer belongs, an unknown kind,
an episode given as a number: the line is rejected). A line it rejects is summarized the lenient way
(``summary._summarize_lenient``: the analyzer's ``records.TraceRecord``, then orjson), so results stay those of the
lenient path; ``tests/test_traces_summary_strict.py`` compares both on generated lines.

``action`` is kept as the raw JSON text (``msgspec.Raw``, not decoded): the summary needs the action's verb only for
ticks of an episode with open failure runs (and for failing ticks), and actions repeat, so the verb is worked out once
per distinct action text (``action_info``). Likewise the flags a tick gets from its own fields are looked up per
distinct combination of those fields (``tick_flags``) instead of going through the tests each time.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from pipeline.traces.summary_columns import (
    FLAG_DEADLOCK,
    FLAG_DEATH,
    FLAG_ERROR,
    FLAG_FAILURE,
    FLAG_PROGRESS,
    FLAG_RECOVERED,
    FLAG_RECOVERY,
    FLAG_SCHEMA_ERROR,
    FLAG_THRASH,
    FLAG_TRAP,
    INT32_MAX,
    INT32_MIN,
)
from pipeline.traces.verbs import FAILING_TICK_OUTCOMES, INVALID_VERB, PRECONDITION_CLASSES, _tool_name, action_verb

Int32 = Annotated[int, msgspec.Meta(ge=INT32_MIN, le=INT32_MAX)]
Size32 = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)]
NO_ACTION = msgspec.Raw()


class SummaryRecord(msgspec.Struct, gc=False, kw_only=True):
    """A well-typed trace line as the summary reads it (fields in the order the trace writer emits them).

    The fields typed ``Any`` are not read; they are decoded all the same because the lenient decoder decodes them
    (``records.TraceRecord``), and what it rejects in them (a number out of a double's range) must be rejected here
    too. ``action`` is checked the same way, once per distinct text (``action_info``).
    """

    schema: Any = None
    kind: Literal["episode_start", "tick", "episode_end"]
    run_id: Any = None
    episode: str | None = None
    ts: Any = None
    ts_estimated: Any = None
    context_window: Any = None
    tick: Int32 | None = None
    latency_s: int | float | None = None
    context_chars: Size32 | None = None
    context: Any = None
    action: msgspec.Raw = NO_ACTION
    schema_error: str | None = None
    outcome: str | None = None
    error_class: str | None = None
    error: Any = None
    observation: Any = None
    trap: str | None = None
    chain_id: str | None = None
    chain_role: str | None = None
    recovery: str | bool | None = None
    progress: bool | None = None
    reason: Any = None


strict_decoder = msgspec.json.Decoder(SummaryRecord)
"""Decodes a well-typed line (valid UTF-8 only, as ``records.fast_decoder``); raises for any other."""
strict_errors = (msgspec.DecodeError, msgspec.ValidationError)

CACHE_MAX = 1 << 16
"""Entries kept per cache at most (cleared when full: the keys of a trace repeat, a few hundred distinct ones)."""

_decode_any = msgspec.json.Decoder().decode


ActionInfo = tuple[str, bool, str, str | None]
"""What the run flags need of one action: ``action_verb(action) or INVALID_VERB`` (the key of failure runs), whether
it is an object, ``_tool_name(action) or "?"`` and ``action_verb(action)`` (a success ends the runs of its verb)."""
BAD_ACTION: ActionInfo = ("", False, "", None)
"""The facts of an action text the lenient decoder would not decode (the line is summarized that way)."""

_actions: dict[bytes, ActionInfo] = {}


def action_info(raw: msgspec.Raw) -> ActionInfo:
    """The verb facts of the action ``raw`` (the JSON text of the field; empty when the line has none), worked out
    once per distinct text, or ``BAD_ACTION``."""
    key = bytes(raw)
    found = _actions.get(key)
    if found is not None:
        return found
    info: ActionInfo
    try:
        action: Any = _decode_any(key) if key else None
    except strict_errors:
        info = BAD_ACTION
    else:
        verb = action_verb(action)
        is_dict = type(action) is dict
        info = (verb or INVALID_VERB, is_dict, (_tool_name(action) or "?") if is_dict else "", verb)
    if len(_actions) >= CACHE_MAX:
        _actions.clear()
    _actions[key] = info
    return info


TickKey = tuple[Any, ...]
TickFacts = tuple[int, str | None, int]
_ticks: dict[TickKey, TickFacts] = {}
_tick_bytes: dict[bytes, TickFacts] = {}
"""``tick_flags``'s answers for the C loop (``_summary_native``), keyed by the raw text of the seven fields."""


def clear_caches() -> None:
    """Empty the caches (they fill again as lines are read). After a pass in the viewer's process: their entries,
    made all through it, are what keeps most of the pass's freed small objects' memory from going back to the system
    (the allocator frees only whole arenas of 1 MiB)."""
    _actions.clear()
    _ticks.clear()
    _tick_bytes.clear()


def tick_flags(key: TickKey) -> TickFacts:
    """What a tick's own fields ``(outcome, chain_role, error_class, trap, recovery, schema_error, progress)`` say:
    its flags (the open runs of its episode may add thrash and deadlock marks); for a failing outcome the error class
    its run is counted under (None: not a failure); the mark such a run gives once long enough (thrash, or deadlock
    for a precondition error)."""
    found = _ticks.get(key)
    if found is None:
        if len(_ticks) >= CACHE_MAX:
            _ticks.clear()
        outcome, error_class = key[0], key[2]
        run_class = None
        if outcome in FAILING_TICK_OUTCOMES:
            run_class = error_class if isinstance(error_class, str) and error_class else _default_class(outcome)
        mark = FLAG_DEADLOCK if run_class in PRECONDITION_CLASSES else FLAG_THRASH
        found = _ticks[key] = (_tick_flags(*key), run_class, mark)
    return found


def _default_class(outcome: str) -> str:
    return "Timeout" if outcome == "timeout" else ("Fatal" if outcome == "death" else "Error")


def _tick_flags(
    outcome: Any, role: Any, error_class: Any, trap: Any, recovery: Any, schema_error: Any, progress: Any
) -> int:
    """The flags a tick gets from its own fields (any types: the lenient path calls this too)."""
    flags = 0
    if outcome == "death" or role == "death":
        flags |= FLAG_DEATH
    elif outcome == "error" or outcome == "timeout":
        flags |= FLAG_ERROR
    if role is not None:
        if role == "attempt":
            flags |= FLAG_RECOVERY
        elif role == "recovered":
            flags |= FLAG_RECOVERY | FLAG_RECOVERED
        elif role == "failure":
            flags |= FLAG_FAILURE
    if recovery:
        flags |= FLAG_RECOVERY
    if trap:
        flags |= FLAG_TRAP
        if trap == "deadlock":
            flags |= FLAG_DEADLOCK
    if error_class is not None:
        if error_class == "SchemaViolation":
            flags |= FLAG_SCHEMA_ERROR
        elif error_class == "Deadlock":
            flags |= FLAG_DEADLOCK
        elif type(error_class) is str and error_class.lower().startswith("thrash"):
            flags |= FLAG_THRASH
    if schema_error:
        flags |= FLAG_SCHEMA_ERROR
    if progress is True:
        flags |= FLAG_PROGRESS
    return flags
