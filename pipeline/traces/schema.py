"""The canonical dirty-trace schema (version ``phasef.dirty_trace/1``).

A dirty trace is JSONL: one record per line, appended and flushed as the agent runs so that viewers can tail it.
Every record carries ``kind``; the kinds are ``episode_start``, ``tick`` and ``episode_end``. A tick is one model
turn (or one turn of a recovery mechanism that acted instead of the model). Recovery chains are marked on the ticks
themselves (``chain_id`` + ``chain_role``) so that any consumer can follow a chain without re-deriving it; analysis
re-derives them anyway for foreign traces that carry no marks.

Extra fields are allowed (importers keep what they cannot map) but the named fields keep their meaning.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "phasef.dirty_trace/1"

RecordKind = Literal["episode_start", "tick", "episode_end"]
Outcome = Literal["ok", "error", "timeout", "death", "success"]
ChainRole = Literal["failure", "attempt", "recovered", "death"]
Actor = Literal["model", "reflex", "watchdog", "repair", "environment", "user"]
TrapKind = Literal["hang", "deadlock", "flaky", "context_bomb", "fatal"]
EpisodeOutcome = Literal["success", "failure", "death", "timeout", "aborted"]

# Error classes used by the reference workload; importers may use others (free text, CamelCase).
ERROR_CLASSES = (
    "SchemaViolation",  # the model's output did not parse as a valid action
    "Timeout",  # an action hung and was killed
    "Deadlock",  # a lock could not be acquired / no progress
    "CheckFailed",  # a check (test) ran and failed
    "NotFound",  # a path or symbol did not exist
    "WrongAnswer",  # an answer action was checked and was wrong
    "ContextOverflow",  # an observation was too large and was cut
    "Fatal",  # an action killed the episode
    "ConnectionError",  # the model endpoint could not be reached
    "ToolError",  # any other failing tool call (importers)
)


class Source(BaseModel):
    """Where a record came from when it was imported (or the workload that wrote it)."""

    model_config = ConfigDict(extra="allow")
    format: str = "phasef"
    file: str | None = None
    line: int | None = None
    sha256: str | None = None


class TraceRecord(BaseModel):
    """Fields common to all record kinds."""

    model_config = ConfigDict(extra="allow")
    schema_: str = Field(default=SCHEMA_VERSION, alias="schema")
    kind: RecordKind
    run_id: str = ""
    episode: str
    task_id: str | None = None
    ts: float = Field(description="UNIX time in seconds when the record was written")
    source: Source | None = None


class EpisodeStart(TraceRecord):
    kind: Literal["episode_start"] = "episode_start"
    model: str | None = None
    seed: int | None = None
    task: str | None = Field(default=None, description="the task statement given to the agent")
    traps: list[str] = Field(default_factory=list, description="traps armed in this episode")


class Tick(TraceRecord):
    kind: Literal["tick"] = "tick"
    tick: int = Field(description="0-based tick number within the episode")
    actor: Actor = "model"
    latency_s: float | None = Field(default=None, description="model call latency; None when no model call")
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    context_chars: int = Field(default=0, description="size of the prompt the actor saw, in characters")
    context: list[dict[str, Any]] | None = Field(
        default=None, description="the bounded chat messages the model saw this tick"
    )
    raw_output: str | None = None
    action: dict[str, Any] | None = Field(default=None, description="the parsed, schema-valid action")
    schema_error: str | None = None
    outcome: Outcome
    error_class: str | None = None
    observation: str | None = Field(default=None, description="what the environment returned, cut to a bound")
    trap: TrapKind | None = None
    chain_id: str | None = None
    chain_role: ChainRole | None = None
    recovery: str | None = Field(
        default=None, description="mechanism that acted on this tick: schema_repair, reflex, watchdog, model"
    )
    progress: bool = Field(default=False, description="the tick moved the task forward (new information)")


class EpisodeEnd(TraceRecord):
    kind: Literal["episode_end"] = "episode_end"
    outcome: EpisodeOutcome
    ticks: int
    solved: bool = False
    reason: str | None = None
    duration_s: float | None = None


AnyRecord = EpisodeStart | Tick | EpisodeEnd

RECORD_TYPES: dict[str, type[TraceRecord]] = {
    "episode_start": EpisodeStart,
    "tick": Tick,
    "episode_end": EpisodeEnd,
}


def parse_record(obj: dict[str, Any]) -> TraceRecord:
    """Validate one decoded JSON object as a canonical record; raises ``ValueError`` naming the field."""
    kind = obj.get("kind")
    cls = RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"field 'kind': expected one of {sorted(RECORD_TYPES)}, got {kind!r}")
    return cls.model_validate(obj)


def json_schema() -> dict[str, Any]:
    """JSON Schema of one trace line (any record kind)."""
    from pydantic import TypeAdapter

    schema: dict[str, Any] = TypeAdapter(AnyRecord).json_schema(by_alias=True)
    schema["$id"] = SCHEMA_VERSION
    schema["title"] = "phasef dirty trace record"
    return schema


RECORD_KINDS = frozenset(RECORD_TYPES)
TICK_OUTCOMES = frozenset(get_args(Outcome))
EPISODE_OUTCOMES = frozenset(get_args(EpisodeOutcome))
CHAIN_ROLES = frozenset(get_args(ChainRole))


def record_problem(obj: dict[str, Any]) -> str | None:
    """Why a decoded object is not a usable canonical record (naming the field), or None.

    Checks only the fields analysis relies on; full validation is ``parse_record``.
    """
    kind = obj.get("kind")
    if type(kind) is not str or kind not in RECORD_KINDS:
        got = "missing" if kind is None else f"got {kind!r}"
        return f"field 'kind': expected one of {sorted(RECORD_KINDS)}, {got}"
    schema = obj.get("schema")
    if schema is not None and schema != SCHEMA_VERSION:
        return f"field 'schema': unsupported version {schema!r} (expected {SCHEMA_VERSION!r})"
    episode = obj.get("episode")
    if type(episode) is not str or not episode:
        return "field 'episode': missing" if episode is None else "field 'episode': expected a non-empty string"
    ts = obj.get("ts")
    if type(ts) is not float and type(ts) is not int:
        return "field 'ts': missing" if ts is None else f"field 'ts': expected a number, got {type(ts).__name__}"
    if kind == "tick":
        tick = obj.get("tick")
        if type(tick) is not int or tick < 0:
            return "field 'tick': missing" if tick is None else f"field 'tick': expected an integer >= 0, got {tick!r}"
        outcome = obj.get("outcome")
        if type(outcome) is not str or outcome not in TICK_OUTCOMES:
            got = "missing" if outcome is None else f"got {outcome!r}"
            return f"field 'outcome': expected one of {sorted(TICK_OUTCOMES)}, {got}"
        role = obj.get("chain_role")
        if role is not None and (type(role) is not str or role not in CHAIN_ROLES):
            return f"field 'chain_role': expected one of {sorted(CHAIN_ROLES)}, got {role!r}"
    elif kind == "episode_end":
        outcome = obj.get("outcome")
        if type(outcome) is not str or outcome not in EPISODE_OUTCOMES:
            got = "missing" if outcome is None else f"got {outcome!r}"
            return f"field 'outcome': expected one of {sorted(EPISODE_OUTCOMES)}, {got}"
    return None
