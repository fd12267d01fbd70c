"""Typed journal events: one model per event type, a discriminated union on ``type``.

A journal line is ``{"v", "seq", "ts", "type", "stage", "step", "attempt", "payload"}``; ``v`` is the event schema
version (:data:`SCHEMA_VERSION`; a line without it is version 1, as every journal before the field was written).
Payload models allow extra fields, so a field a later version adds is kept, not an error. An event type or schema
version this version does not know is reported by the reader as a problem with its line number.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


class PlanItem(_Payload):
    stage: str
    step: str
    kind: str = ""
    title: str | None = None


class SessionStartedPayload(_Payload):
    pid: int | None = None
    resume: bool = False
    config_sha256: str | None = None
    config_path: str | None = None
    final_gate: str | None = None
    plan: list[PlanItem] = Field(default_factory=list)
    argv: list[str] = Field(default_factory=list)


class RunCancelRequestedPayload(_Payload):
    operator: str | None = None


class RunFinishedPayload(_Payload):
    state: Literal["completed", "failed", "cancelled"] = "completed"
    exit_code: int | None = None
    final_decision: Literal["GO", "GO-OVERRIDE", "NO-GO"] | None = None
    error: str | None = None
    report: list[str] = Field(default_factory=list)
    """The final-decision report files written (session-relative), or why they were not."""


class JournalRepairedPayload(_Payload):
    torn_bytes: int | None = None
    line: int | None = None
    saved_to: str | None = None


class StepStartedPayload(_Payload):
    pid: int | None = None
    handle: dict[str, Any] | None = None
    fingerprint: str | None = None
    log: str | None = None
    command: str | None = None
    argv: list[str] = Field(default_factory=list)
    services: dict[str, str | None] = Field(default_factory=dict)


class StepProgressPayload(_Payload):
    """Whatever the step emitted (``event`` plus its fields), with the attempt and log line it came from."""


class StepReattachedPayload(_Payload):
    pid: int | None = None
    alive: bool = False


class StepSucceededPayload(_Payload):
    fingerprint: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict)
    duration_s: float | None = None


class StepFailedPayload(_Payload):
    error: str | None = None
    exit_code: int | None = None
    timed_out: bool = False
    interrupted: bool = False
    retry_at: str | None = None
    retry_in_s: float | None = None
    duration_s: float | None = None


class StepReasonPayload(_Payload):
    reason: str | None = None


class StepSkippedPayload(_Payload):
    reason: str | None = None
    fingerprint: str | None = None
    outputs: dict[str, str] | None = None


class StepCancelRequestedPayload(_Payload):
    operator: str | None = None


class StepRetryRequestedPayload(_Payload):
    operator: str | None = None
    reason: str = ""
    role: str | None = None


class GateOpenedPayload(_Payload):
    prompt: str | None = None
    evidence: dict[str, str] = Field(default_factory=dict)
    evidence_sha256: str | None = None
    audit: dict[str, Any] | None = None
    criteria: list[dict[str, Any]] | None = None
    """The plan's pass criteria as judged when the final gate opened (None on other gates)."""
    deadline: str | None = None
    reopened: str | None = None


class GateDecidedPayload(_Payload):
    decision: Literal["go", "no-go"] | None = None
    operator: str | None = None
    reason: str | None = None
    evidence_sha256: str | None = None
    audit_verdict: str | None = None
    override: bool = False
    unmet_criteria: list[str] = Field(default_factory=list)
    """The pass criteria a GO at the final gate was signed over (an override)."""
    key_fingerprint: str | None = None
    via: str | None = None


class GateRefusedPayload(_Payload):
    operator: str | None = None
    decision: str | None = None
    reason: str | None = None
    via: str | None = None


class GateTimedOutPayload(_Payload):
    deadline: str | None = None


class ServiceStartedPayload(_Payload):
    name: str
    url: str | None = None
    model: str | None = None
    pid: int | None = None
    create_time: float | None = None
    """When the service's process started (psutil), so a resumed supervisor stops it and never a reused pid."""


class ServiceFailedPayload(_Payload):
    name: str
    error: str | None = None


class ServiceStoppedPayload(_Payload):
    name: str


class _Event(BaseModel):
    v: int = 1
    seq: int
    ts: str
    stage: str | None = None
    step: str | None = None
    attempt: int | None = None

    @property
    def key(self) -> str:
        return f"{self.stage}.{self.step}"


class SessionStarted(_Event):
    type: Literal["session_started"]
    payload: SessionStartedPayload


class RunCancelRequested(_Event):
    type: Literal["run_cancel_requested"]
    payload: RunCancelRequestedPayload


class RunFinished(_Event):
    type: Literal["run_finished"]
    payload: RunFinishedPayload


class JournalRepaired(_Event):
    type: Literal["journal_repaired"]
    payload: JournalRepairedPayload


class StepStarted(_Event):
    type: Literal["step_started"]
    payload: StepStartedPayload


class StepProgress(_Event):
    type: Literal["step_progress"]
    payload: StepProgressPayload


class StepReattached(_Event):
    type: Literal["step_reattached"]
    payload: StepReattachedPayload


class StepSucceeded(_Event):
    type: Literal["step_succeeded"]
    payload: StepSucceededPayload


class StepFailed(_Event):
    type: Literal["step_failed"]
    payload: StepFailedPayload


class StepCancelled(_Event):
    type: Literal["step_cancelled"]
    payload: StepReasonPayload


class StepBlocked(_Event):
    type: Literal["step_blocked"]
    payload: StepReasonPayload


class StepSkipped(_Event):
    type: Literal["step_skipped"]
    payload: StepSkippedPayload


class StepCancelRequested(_Event):
    type: Literal["step_cancel_requested"]
    payload: StepCancelRequestedPayload


class StepRetryRequested(_Event):
    type: Literal["step_retry_requested"]
    payload: StepRetryRequestedPayload


class GateOpened(_Event):
    type: Literal["gate_opened"]
    payload: GateOpenedPayload


class GateDecided(_Event):
    type: Literal["gate_decided"]
    payload: GateDecidedPayload


class GateRefused(_Event):
    type: Literal["gate_refused"]
    payload: GateRefusedPayload


class GateTimedOut(_Event):
    type: Literal["gate_timed_out"]
    payload: GateTimedOutPayload


class ServiceStarted(_Event):
    type: Literal["service_started"]
    payload: ServiceStartedPayload


class ServiceFailed(_Event):
    type: Literal["service_failed"]
    payload: ServiceFailedPayload


class ServiceStopped(_Event):
    type: Literal["service_stopped"]
    payload: ServiceStoppedPayload


TypedEvent = Annotated[
    SessionStarted
    | RunCancelRequested
    | RunFinished
    | JournalRepaired
    | StepStarted
    | StepProgress
    | StepReattached
    | StepSucceeded
    | StepFailed
    | StepCancelled
    | StepBlocked
    | StepSkipped
    | StepCancelRequested
    | StepRetryRequested
    | GateOpened
    | GateDecided
    | GateRefused
    | GateTimedOut
    | ServiceStarted
    | ServiceFailed
    | ServiceStopped,
    Field(discriminator="type"),
]

TYPED_EVENT: TypeAdapter[TypedEvent] = TypeAdapter(TypedEvent)
EVENT_TYPES: frozenset[str] = frozenset(
    cls.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for cls in _Event.__subclasses__()
)
