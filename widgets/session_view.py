"""The state the session widgets draw: plain frozen dataclasses, built by the app from the engine's state.

Widgets take these and nothing else, so they can be tested (and snapshot) with constructed state, and the engine's
own types can change without touching a widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepView:
    key: str  # STAGE.step
    stage: str
    step: str
    title: str | None = None
    kind: str = ""
    state: str = "pending"
    attempts: int = 0
    retries: int | None = None  # attempts allowed after the first, when known
    started_at: float | None = None  # UNIX time, for a live duration
    duration_s: float | None = None
    error: str | None = None
    cached: bool = False
    note: str | None = None  # a short live line (last progress event)


@dataclass(frozen=True)
class StageView:
    id: str
    title: str
    steps: tuple[StepView, ...] = ()

    @property
    def state(self) -> str:
        """One word for the whole stage, from its steps (the worst news wins)."""
        states = {s.state for s in self.steps}
        for word in ("failed", "blocked", "running", "retrying", "waiting", "cancelled"):
            if word in states:
                return word
        if states and states <= {"succeeded", "skipped"}:
            return "done"
        return "pending"


@dataclass(frozen=True)
class EvidenceView:
    name: str
    path: str
    sha256: str | None = None
    changed: bool = False
    """(replay) The file no longer hashes to ``sha256``, what the journal recorded: not the original any more."""


@dataclass(frozen=True)
class VerdictView:
    """One auditor's verdict on a packet of evidence."""

    auditor: str
    role: str = ""  # primary / recursive
    verdict: str | None = None  # GO / NO-GO / INVALID / BLOCKED; None while not answered
    findings: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()
    judged_sha256: str | None = None
    model: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class CriterionView:
    """One of the plan's pass criteria, as judged when the final gate opened."""

    criterion: str  # evidence / comparison / audit
    label: str
    met: bool = False
    evidence: str = ""


@dataclass(frozen=True)
class GateView:
    id: str  # STAGE.step
    title: str | None = None
    state: str = "waiting"  # waiting / decided / timed_out
    prompt: str | None = None
    opened: str | None = None
    deadline: str | None = None
    evidence: tuple[EvidenceView, ...] = ()
    evidence_sha256: str | None = None
    audit_verdict: str | None = None  # the combined audit verdict bound to this gate
    verdicts: tuple[VerdictView, ...] = ()
    decision: str | None = None  # go / no-go
    operator: str | None = None
    reason: str | None = None
    decided_at: str | None = None
    key_fingerprint: str | None = None
    override: bool = False
    refusals: tuple[str, ...] = ()
    final: bool = False  # the gate whose decision is the run's GO / GO-OVERRIDE / NO-GO
    criteria: tuple[CriterionView, ...] = ()  # the pass criteria judged when it opened (final gate only)

    @property
    def unmet_criteria(self) -> tuple[CriterionView, ...]:
        return tuple(c for c in self.criteria if not c.met)


@dataclass(frozen=True)
class MetricView:
    name: str
    value: str
    source: str = ""  # the step it came from


@dataclass(frozen=True)
class DeltaRow:
    """One metric before and after fine-tuning."""

    metric: str
    baseline: float | None
    finetuned: float | None
    unit: str = ""
    lower_is_better: bool = True
    beyond_noise: bool | None = None  # the change is larger than run-to-run noise (paired bootstrap)

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.finetuned is None:
            return None
        return self.finetuned - self.baseline

    @property
    def improved(self) -> bool | None:
        d = self.delta
        if d is None or d == 0:
            return None
        return (d < 0) == self.lower_is_better


@dataclass(frozen=True)
class SessionView:
    name: str
    state: str = "created"
    started: str | None = None
    final_decision: str | None = None
    stages: tuple[StageView, ...] = ()
    gates: tuple[GateView, ...] = ()
    metrics: tuple[MetricView, ...] = ()
    deltas: tuple[DeltaRow, ...] = ()
    residual_blockers: tuple[str, ...] = ()
    pass_criteria: tuple[CriterionView, ...] = ()
    loss: tuple[tuple[float, float], ...] = ()  # (training step, loss) while Stage D trains
    val_loss: tuple[tuple[float, float], ...] = ()
    current_step: str | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)

    def step(self, key: str) -> StepView | None:
        for stage in self.stages:
            for step in stage.steps:
                if step.key == key:
                    return step
        return None

    @property
    def pending_gates(self) -> tuple[GateView, ...]:
        return tuple(g for g in self.gates if g.state == "waiting")
