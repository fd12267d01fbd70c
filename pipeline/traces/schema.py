"""The canonical dirty-trace schema (version ``phasef.dirty_trace/1``).

A dirty trace is JSONL: one record per line, appended and flushed as the agent runs so that viewers can tail it.
Every record carries ``kind``; the kinds are ``episode_start``, ``tick`` and ``episode_end``. A tick is one model
turn (or one turn of a recovery mechanism that acted instead of the model). Recovery chains are marked on the ticks
themselves (``chain_id`` + ``chain_role``) so that any consumer can follow a chain without re-deriving it; analysis
re-derives them anyway for foreign traces that carry no marks.

Extra fields are allowed (importers keep what they cannot map) but the named fields keep their meaning. Every
field phasef reads is named here with its meaning and unit; the metrics computed from them are defined in
docs/trace-format.md. ``kind`` is required on every record (the published schema says so, although the Python
models give it a default for their own constructors).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, get_args

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
    schema_: Literal["phasef.dirty_trace/1"] = Field(
        default="phasef.dirty_trace/1", alias="schema", description="the schema version; absent means this one"
    )
    kind: RecordKind = Field(description="what the record is; required")
    run_id: str = Field(default="", description="the run; an episode is identified by (run_id, episode)")
    episode: str = Field(min_length=1, description="episode id, unique within the run")
    task_id: str | None = Field(default=None, description="the task of the episode")
    ts: float = Field(
        description="UNIX time in seconds (since 1970-01-01T00:00:00Z, fractions allowed) when the record was "
        "written; MTTR seconds are differences of ts"
    )
    ts_estimated: bool | None = Field(
        default=None, description="true when ts is not a real time (an importer's guess); such ts give no seconds"
    )
    source: Source | None = None


class EpisodeStart(TraceRecord):
    kind: Literal["episode_start"] = "episode_start"
    model: str | None = Field(default=None, description="model id the agent called")
    seed: int | None = None
    task: str | None = Field(default=None, description="the task statement given to the agent")
    traps: list[str] = Field(default_factory=list, description="traps armed in this episode")
    context_window: int | None = Field(
        default=None,
        ge=0,
        description="past events the prompt shows (the agent's sliding window); the context growth of this "
        "episode is fitted from tick context_window + 1 on, unless the gate sets contextWarmupTicks",
    )


class Tick(TraceRecord):
    kind: Literal["tick"] = "tick"
    tick: int = Field(ge=0, description="0-based tick number within the episode, contiguous (0, 1, 2, ...)")
    actor: Actor = Field(
        default="model", description="who acted; 'model' and 'repair' ticks are model turns (a model call)"
    )
    latency_s: float | None = Field(
        default=None, description="seconds the model call that answered took; null when no model call"
    )
    prompt_tokens: int | None = Field(default=None, description="tokens of the prompt, as the endpoint counted")
    completion_tokens: int | None = None
    context_chars: int = Field(
        default=0, ge=0, description="size of the prompt the actor saw, in characters; 0: no prompt (no sample)"
    )
    context: list[dict[str, Any]] | None = Field(
        default=None, description="the bounded chat messages the model saw this tick"
    )
    raw_output: str | None = Field(
        default=None, description="the model's reply as received; not null on a model turn that got a reply"
    )
    action: dict[str, Any] | None = Field(default=None, description="the parsed, schema-valid action")
    schema_error: str | None = Field(
        default=None, description="why the reply is not a valid action; non-empty makes the tick a schema violation"
    )
    outcome: Outcome = Field(
        description="ok/success: the action worked (success: the task is solved); error/timeout: it failed; "
        "death: the episode died on this tick"
    )
    error_class: str | None = Field(default=None, description="CamelCase class of the failure (see ERROR_CLASSES)")
    error: str | None = Field(
        default=None, description="a short statement of the failure (repeats of the same one are a deadlock)"
    )
    observation: str | None = Field(default=None, description="what the environment returned, cut to a bound")
    trap: TrapKind | None = Field(default=None, description="the trap that fired on this tick (a trap interaction)")
    chain_id: str | None = Field(default=None, description="the recovery chain this tick belongs to")
    chain_role: ChainRole | None = Field(
        default=None,
        description="failure opens a chain, attempt continues it, recovered / death close it (needs chain_id)",
    )
    recovery: str | None = Field(
        default=None, description="mechanism that acted on this tick: schema_repair, reflex, watchdog, model"
    )
    progress: bool = Field(default=False, description="the tick moved the task forward (new information)")
    thrash: bool | None = Field(
        default=None, description="true when the agent repeated a failing action on this tick (a thrash tick)"
    )
    death_reason: str | None = Field(default=None, description="why the episode died, on its death tick")


class EpisodeEnd(TraceRecord):
    kind: Literal["episode_end"] = "episode_end"
    outcome: EpisodeOutcome = Field(description="how the episode ended; 'aborted' means the run stopped it")
    ticks: int = Field(ge=0, description="number of tick records of the episode")
    solved: bool = Field(default=False, description="the task was solved")
    reason: str | None = Field(default=None, description="why the episode ended (for a death: what killed it)")
    error_class: str | None = Field(default=None, description="class of the failure that ended the episode")
    duration_s: float | None = Field(default=None, description="seconds from episode start to end")


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
    return cls.model_validate(obj, strict=True)


def json_schema() -> dict[str, Any]:
    """JSON Schema of one trace line (any record kind)."""
    from pydantic import TypeAdapter

    schema: dict[str, Any] = TypeAdapter(AnyRecord).json_schema(by_alias=True)
    for name in RECORD_TYPES.values():
        definition = schema["$defs"][name.__name__]
        definition["required"] = sorted({"kind", *definition.get("required", [])})
        definition["properties"]["kind"].pop("default", None)
    schema["$id"] = SCHEMA_VERSION
    schema["title"] = "phasef dirty trace record"
    return schema


RECORD_KINDS = frozenset(RECORD_TYPES)
TICK_OUTCOMES = frozenset(get_args(Outcome))
EPISODE_OUTCOMES = frozenset(get_args(EpisodeOutcome))
CHAIN_ROLES = frozenset(get_args(ChainRole))


class _Fields(Protocol):
    """A decoded record: a dict, or a ``records.TraceRecord`` (which answers ``get`` the same way)."""

    def get(self, key: str, default: Any = None, /) -> Any: ...


def record_problem(obj: _Fields) -> str | None:
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
