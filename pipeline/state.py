"""Session state, rebuilt by replaying the journal (``apply`` one event at a time).

This is what every client sees: ``phasef status --json``, the TUI, an SSH operator. Replay is deterministic: the same
journal gives the same state, so a reattached client shows everything that happened while it was away.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, assert_never

from pydantic import BaseModel, Field, ValidationError

from pipeline import events
from pipeline.journal import JOURNAL_NAME, Event, JournalProblem, read_journal
from pipeline.report.criteria import pending as pending_criteria

StepEvent = (
    events.StepStarted
    | events.StepProgress
    | events.StepSucceeded
    | events.StepFailed
    | events.StepCancelled
    | events.StepBlocked
    | events.StepSkipped
) | (events.GateOpened | events.GateDecided | events.GateTimedOut)

StepStatus = Literal[
    "pending", "running", "retrying", "succeeded", "failed", "skipped", "cancelled", "waiting", "blocked"
]
GateStatus = Literal["waiting", "decided", "timed_out"]
RunStatus = Literal["created", "running", "waiting", "completed", "failed", "cancelled", "interrupted"]
FinalDecision = Literal["GO", "GO-OVERRIDE", "NO-GO"]

PROGRESS_KEEP = 5000
"""Progress events kept per step in memory (a training run of a few thousand steps keeps its whole curve)."""


class StepState(BaseModel):
    stage: str
    step: str
    kind: str = ""
    title: str | None = None
    state: StepStatus = "pending"
    attempts: int = 0
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    error: str | None = None
    pid: int | None = None
    handle: dict[str, Any] | None = None
    """How the step's executor finds its running job again (``JobHandle``); None in journals before it."""
    fingerprint: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict)
    cached: bool = False
    skip_reason: str | None = None
    log: str | None = None
    progress: list[dict[str, Any]] = Field(default_factory=list)
    retry_at: str | None = None

    @property
    def key(self) -> str:
        return f"{self.stage}.{self.step}"


class GateState(BaseModel):
    id: str
    stage: str
    step: str
    state: GateStatus = "waiting"
    prompt: str | None = None
    opened: str | None = None
    deadline: str | None = None
    evidence: dict[str, str] = Field(default_factory=dict)
    evidence_sha256: str | None = None
    audit: dict[str, Any] | None = None
    criteria: list[dict[str, Any]] | None = None
    """The plan's pass criteria as judged when the final gate opened (None on other gates)."""
    decision: Literal["go", "no-go"] | None = None
    operator: str | None = None
    reason: str | None = None
    override: bool = False
    key_fingerprint: str | None = None
    decided_at: str | None = None
    refusals: list[dict[str, Any]] = Field(default_factory=list)


class ServiceState(BaseModel):
    name: str
    state: Literal["starting", "running", "stopped", "failed"] = "starting"
    url: str | None = None
    pid: int | None = None
    create_time: float | None = None
    error: str | None = None


class SessionState(BaseModel):
    session: str
    state: RunStatus = "created"
    config_sha256: str | None = None
    started: str | None = None
    finished: str | None = None
    supervisor_pid: int | None = None
    steps: dict[str, StepState] = Field(default_factory=dict)
    gates: dict[str, GateState] = Field(default_factory=dict)
    services: dict[str, ServiceState] = Field(default_factory=dict)
    final_gate: str | None = None
    final_decision: FinalDecision | None = Field(default=None, description="GO, GO-OVERRIDE or NO-GO once finished")
    exit_code: int | None = None
    error: str | None = None
    last_seq: int = 0
    problems: list[str] = Field(default_factory=list)

    # -- replay ---------------------------------------------------------------------------------------------
    def apply(self, ev: Event) -> None:
        """Apply one event; one that does not fit its type's model becomes a problem (the journal's reader has
        already reported it with its line number, so this only happens to events made in this process)."""
        self.last_seq = max(self.last_seq, ev.seq)
        if ev.type == "step_progress":  # most of a long journal; its payload is free-form: no model to build
            self._progress(self._step(ev), ev.payload)
            return
        try:
            t = ev.typed()
        except ValidationError as exc:
            self.problems.append(f"event {ev.seq} ({ev.type}): {exc.errors()[0]['msg']}")
            return
        self._dispatch(t)

    def _dispatch(self, t: events.TypedEvent) -> None:
        match t:
            case events.SessionStarted():
                self._on_session_started(t)
            case events.StepStarted():
                self._on_step_started(t)
            case events.StepProgress():
                self._progress(self._step(t), t.payload.model_extra or {})
            case events.StepSucceeded():
                st = self._finish(t, "succeeded", t.payload.duration_s)
                st.outputs = t.payload.outputs
                st.summary = t.payload.summary
                st.fingerprint = t.payload.fingerprint or st.fingerprint
            case events.StepFailed():
                retry = t.payload.retry_at
                st = self._finish(t, "retrying" if retry else "failed", t.payload.duration_s)
                st.error = t.payload.error
                st.retry_at = retry
            case events.StepCancelled():
                self._finish(t, "cancelled").error = t.payload.reason or "cancelled"
            case events.StepBlocked():
                self._finish(t, "blocked").error = t.payload.reason
            case events.StepSkipped():
                self._on_step_skipped(t)
            case events.GateOpened():
                self._on_gate_opened(t)
            case events.GateDecided():
                self._on_gate_decided(t)
            case events.GateRefused():
                if t.key in self.gates:
                    self.gates[t.key].refusals.append(t.payload.model_dump(exclude_unset=True))
            case events.GateTimedOut():
                self._on_gate_timed_out(t)
            case events.ServiceStarted():
                p = t.payload
                self.services[p.name] = ServiceState(
                    name=p.name, state="running", url=p.url, pid=p.pid, create_time=p.create_time
                )
            case events.ServiceFailed():
                svc = self.services.setdefault(t.payload.name, ServiceState(name=t.payload.name))
                svc.state = "failed"
                svc.error = t.payload.error
            case events.ServiceStopped():
                svc = self.services.setdefault(t.payload.name, ServiceState(name=t.payload.name))
                svc.state = "stopped"
                svc.pid = None
            case events.RunFinished():
                self._on_run_finished(t)
            case (
                events.StepReattached()
                | events.StepCancelRequested()
                | events.StepRetryRequested()
                | events.RunCancelRequested()
                | events.JournalRepaired()
            ):
                pass  # recorded for the reader; the state they change is set by the events that follow
            case _:
                assert_never(t)

    @staticmethod
    def _progress(st: StepState, payload: dict[str, Any]) -> None:
        st.progress.append(payload)
        if len(st.progress) > PROGRESS_KEEP:
            del st.progress[: len(st.progress) - PROGRESS_KEEP]

    def _step(self, ev: StepEvent | Event) -> StepState:
        key = f"{ev.stage}.{ev.step}"
        if key not in self.steps:
            self.steps[key] = StepState(stage=ev.stage or "", step=ev.step or "")
        return self.steps[key]

    def _on_session_started(self, ev: events.SessionStarted) -> None:
        p = ev.payload
        self.state = "running"
        self.started = self.started or ev.ts
        self.finished = None
        self.exit_code = None
        self.config_sha256 = p.config_sha256
        self.supervisor_pid = p.pid
        self.final_gate = p.final_gate
        for item in p.plan:
            key = f"{item.stage}.{item.step}"
            st = self.steps.setdefault(key, StepState(stage=item.stage, step=item.step))
            st.kind = item.kind or st.kind
            st.title = item.title
        for st in self.steps.values():
            if st.state in ("running", "retrying"):
                st.state = "pending"  # interrupted by the crash; the resumed engine decides what to do

    def _on_step_started(self, ev: events.StepStarted) -> None:
        st = self._step(ev)
        p = ev.payload
        st.state = "running"
        st.attempts = max(st.attempts, ev.attempt or 1)
        st.started = ev.ts
        st.finished = None
        st.duration_s = None
        st.error = None
        st.pid = p.pid
        st.handle = p.handle
        st.fingerprint = p.fingerprint
        st.log = p.log
        st.cached = False
        st.retry_at = None

    def _finish(self, ev: StepEvent, status: StepStatus, duration_s: float | None = None) -> StepState:
        st = self._step(ev)
        st.state = status
        st.finished = ev.ts
        st.duration_s = duration_s if duration_s is not None else st.duration_s
        st.pid = None
        st.handle = None
        return st

    def _on_step_skipped(self, ev: events.StepSkipped) -> None:
        st = self._step(ev)
        st.state = "skipped"
        st.cached = True
        st.skip_reason = ev.payload.reason
        st.fingerprint = ev.payload.fingerprint or st.fingerprint
        if ev.payload.outputs is not None:
            st.outputs = ev.payload.outputs

    def _on_gate_opened(self, ev: events.GateOpened) -> None:
        st = self._step(ev)
        st.state = "waiting"
        st.started = st.started or ev.ts
        st.attempts = max(st.attempts, 1)
        p = ev.payload
        self.gates[ev.key] = GateState(
            id=ev.key,
            stage=ev.stage or "",
            step=ev.step or "",
            prompt=p.prompt,
            opened=ev.ts,
            deadline=p.deadline,
            evidence=p.evidence,
            evidence_sha256=p.evidence_sha256,
            audit=p.audit,
            criteria=p.criteria,
        )

    def _on_gate_decided(self, ev: events.GateDecided) -> None:
        key = ev.key
        gate = self.gates.setdefault(key, GateState(id=key, stage=ev.stage or "", step=ev.step or ""))
        p = ev.payload
        gate.state = "decided"
        gate.decision = p.decision
        gate.operator = p.operator
        gate.reason = p.reason
        gate.override = p.override
        gate.key_fingerprint = p.key_fingerprint
        gate.decided_at = ev.ts
        st = self._finish(ev, "succeeded" if gate.decision == "go" else "failed")
        st.error = None if gate.decision == "go" else f"NO-GO by {gate.operator}: {gate.reason}"
        st.summary = {"decision": gate.decision, "operator": gate.operator, "override": gate.override}

    def _on_gate_timed_out(self, ev: events.GateTimedOut) -> None:
        key = ev.key
        gate = self.gates.setdefault(key, GateState(id=key, stage=ev.stage or "", step=ev.step or ""))
        gate.state = "timed_out"
        gate.decision = "no-go"
        gate.reason = "no decision before the gate's timeout"
        gate.decided_at = ev.ts
        st = self._finish(ev, "failed")
        st.error = "gate timed out: NO-GO"

    def _on_run_finished(self, ev: events.RunFinished) -> None:
        p = ev.payload
        self.state = p.state
        self.finished = ev.ts
        self.final_decision = p.final_decision
        self.exit_code = p.exit_code
        self.error = p.error
        self.supervisor_pid = None

    # -- views ----------------------------------------------------------------------------------------------
    def waiting_gates(self) -> list[GateState]:
        return [g for g in self.gates.values() if g.state == "waiting"]

    def pass_criteria(self) -> list[dict[str, Any]]:
        """The plan's pass criteria as the final gate judged them, or each one not judged yet."""
        gate = self.gates.get(self.final_gate) if self.final_gate else None
        if gate is not None and gate.criteria is not None:
            return gate.criteria
        if self.final_gate is None:
            return pending_criteria("the plan has no final gate")
        return pending_criteria(f"the final gate {self.final_gate} has not opened")

    def public(self) -> dict[str, Any]:
        """The ``phasef status --json`` contract (stable; scripts rely on it)."""
        return {
            "schema": "phasef.status/1",
            "session": self.session,
            "state": self.state,
            "started": self.started,
            "finished": self.finished,
            "final_decision": self.final_decision,
            "final_gate": self.final_gate,
            "pass_criteria": [
                {k: c.get(k) for k in ("criterion", "label", "met", "evidence", "source", "sha256")}
                for c in self.pass_criteria()
            ],
            "exit_code": self.exit_code,
            "error": self.error,
            "steps": [
                {
                    "stage": s.stage,
                    "step": s.step,
                    "kind": s.kind,
                    "state": s.state,
                    "attempts": s.attempts,
                    "duration_s": s.duration_s,
                    "cached": s.cached,
                    "error": s.error,
                }
                for s in self.steps.values()
            ],
            "gates": [
                {
                    "id": g.id,
                    "state": g.state,
                    "decision": g.decision,
                    "operator": g.operator,
                    "reason": g.reason,
                    "override": g.override,
                    "final": g.id == self.final_gate,
                    "evidence_sha256": g.evidence_sha256,
                    "decided_at": g.decided_at,
                }
                for g in self.gates.values()
            ],
            "services": {n: s.model_dump() for n, s in self.services.items()},
            "problems": self.problems,
        }


def replay(events: Iterable[Event | JournalProblem], session: str) -> SessionState:
    """The state after ``events``; an event whose payload does not fit its type (a damaged or hand-edited journal)
    becomes a problem naming its sequence number and type, and the replay goes on."""
    state = SessionState(session=session)
    for item in events:
        if isinstance(item, Event):
            state.apply(item)
        else:
            state.problems.append(str(item))
    return state


def load_state(session_dir: Path) -> SessionState:
    """Replay a session's journal from disk (read-only; bad lines become ``problems``)."""
    path = session_dir / JOURNAL_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path}: no journal (is this a session folder?)")
    state = replay(read_journal(path), session_dir.name)
    if state.state in ("running", "waiting") and state.supervisor_pid is not None:
        from pipeline.journal import is_locked

        if not is_locked(session_dir):
            state.state = "interrupted"
    return state
