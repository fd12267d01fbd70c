"""A session's engine state as the screens show it: the view models of ``widgets.session_view``, built from the
replayed ``SessionState``, the plan's titles and the comparison report (pure functions, no threads)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from pipeline.clock import unix_seconds
from pipeline.fsio import read_bytes_bounded
from pipeline.state import GateState, SessionState, StepState
from widgets.session_view import (
    CriterionView,
    DeltaRow,
    EvidenceView,
    GateView,
    MetricView,
    SessionView,
    StageView,
    StepView,
    VerdictView,
)

COMPARISON_NAME = "comparison.json"
REPORT_LIMIT_BYTES = 64 * 2**20
HEADLINE_LIMIT = 10
GATE_FIELDS_AS_RECORDED: set[str] = {
    "id",
    "state",
    "prompt",
    "opened",
    "deadline",
    "evidence_sha256",
    "decision",
    "operator",
    "reason",
    "decided_at",
    "key_fingerprint",
    "override",
}
"""Gate fields the view shows as the journal recorded them."""

HEADLINE_KEYS = (
    "verdict",
    "ticksObserved",
    "episodes",
    "solved",
    "deaths",
    "recovered",
    "chains",
    "schemaViolationRate",
    "latencyP50",
    "latencyP95",
    "mttrTicks",
    "contextMaxChars",
    "final_train_loss",
    "final_val_loss",
    "status",
    "evidence_complete",
    "decision",
)
"""Step summary keys shown first on the dashboard, when a step reports them."""

LOWER_IS_BETTER_HINTS = ("latency", "violation", "error", "death", "mttr", "thrash", "deadlock", "loss", "fail")


def item_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        for key in ("text", "finding", "blocker", "message", "summary", "title"):
            if isinstance(item.get(key), str):
                return str(item[key])
    return orjson.dumps(item, default=str).decode()


def _format_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and len(value) <= 24:
        return value
    return None


class PlanInfo:
    """Titles, retry counts and sharded steps from the session's resolved config (the journal names steps, not
    stages), for display only: taken from the TOML as the supervisor wrote it, without the config's models (a TUI
    that attaches does not import them, and an SSH session does not validate the whole plan to show its titles).
    Lenient: a value of the wrong type is left out (the step shows its id, its attempts no total); whether a plan is
    valid is for ``phasef config check`` and the supervisor to say. On any plan the config's model accepts, the
    result is the model's (tested against it)."""

    def __init__(self, path: Path | None) -> None:
        self.stage_titles: dict[str, str] = {}
        self.step_titles: dict[str, str] = {}
        self.retries: dict[str, int] = {}
        self.sharded: set[str] = set()  # steps whose parallel processes are shards (episodes split), not ranks
        self.stage_order: list[str] = []
        if path is None:
            return
        from pipeline.config_section import ConfigError, parse_toml, read_text

        try:
            stages = parse_toml(read_text(path), str(path)).get("stages")
        except ConfigError:
            return
        for stage_id, stage in stages.items() if isinstance(stages, dict) else ():
            if not isinstance(stage, dict):
                continue
            self.stage_order.append(stage_id)
            if isinstance(stage.get("title"), str):
                self.stage_titles[stage_id] = stage["title"]
            steps = stage.get("steps", {})
            for step_id, step in steps.items() if isinstance(steps, dict) else ():
                if not isinstance(step, dict):
                    continue
                key = f"{stage_id}.{step_id}"
                if isinstance(step.get("title"), str) and step["title"]:
                    self.step_titles[key] = step["title"]
                if _whole(step.get("retries"), 0, 100):
                    self.retries[key] = step["retries"]
                if _whole(step.get("shards"), 2, 256):
                    self.sharded.add(key)


def _whole(value: Any, low: int, high: int) -> bool:
    """An integer in [low, high] as TOML gives it (a boolean is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _note(st: StepState) -> str | None:
    """A short live line from a step's last progress event (training step and loss, eval ticks...); on a gate
    signed as an override, that it was (it stays on the board for the rest of the session)."""
    if st.kind == "gate" and st.summary.get("override"):
        return f"GO by {st.summary.get('operator')}: OVERRIDE"
    if not st.progress or st.state not in ("running", "retrying"):
        return None
    last = st.progress[-1]
    event = last.get("event", "")
    if event == "train" and last.get("step") is not None:
        loss = last.get("train_loss")
        total = last.get("total_steps")
        text = f"step {last['step']}" + (f"/{total}" if total else "")
        return text + (f" loss {loss:.3f}" if isinstance(loss, int | float) else "")
    parts = [f"{k}={_format_value(v)}" for k, v in last.items() if not k.startswith("_") and k != "event"]
    parts = [p for p in parts if not p.endswith("=None")][:3]
    return f"{event} " + " ".join(parts) if event else " ".join(parts) or None


def step_view(st: StepState, plan: PlanInfo) -> StepView:
    return StepView(
        key=st.key,
        stage=st.stage,
        step=st.step,
        title=st.title or plan.step_titles.get(st.key),
        kind=st.kind,
        state=st.state,
        attempts=st.attempts,
        retries=plan.retries.get(st.key),
        started_at=unix_seconds(st.started),
        duration_s=st.duration_s,
        error=st.error or st.skip_reason if st.state != "skipped" else None,
        cached=st.cached,
        note=_note(st),
    )


def criterion_view(item: Mapping[str, Any]) -> CriterionView:
    return CriterionView(
        criterion=str(item.get("criterion") or "?"),
        label=str(item.get("label") or item.get("criterion") or "?"),
        met=bool(item.get("met")),
        evidence=str(item.get("evidence") or ""),
    )


def gate_view(gate: GateState, plan: PlanInfo, final_gate: str | None = None) -> GateView:
    audit = gate.audit or {}
    verdicts = tuple(
        VerdictView(
            auditor=str(a.get("name") or "auditor"),
            role=str(a.get("role") or ""),
            verdict=a.get("verdict"),
            findings=tuple(item_text(f) for f in a.get("findings") or ()),
            blockers=tuple(item_text(b) for b in a.get("blockers") or ()),
            judged_sha256=audit.get("packet_sha256"),
            error=a.get("error"),
        )
        for a in audit.get("auditors") or ()
        if isinstance(a, Mapping)
    )
    evidence = tuple(
        EvidenceView(name=Path(path).name, path=path, sha256=None if sha in (None, "missing") else sha)
        for path, sha in gate.evidence.items()
    )
    return GateView(
        **gate.model_dump(include=GATE_FIELDS_AS_RECORDED),
        title=plan.step_titles.get(gate.id) or gate.prompt,
        evidence=evidence,
        audit_verdict=audit.get("verdict") if gate.audit is not None else None,
        verdicts=verdicts,
        refusals=tuple(f"{r.get('operator', '?')}: {r.get('reason', '?')}" for r in gate.refusals),
        final=gate.id == final_gate,
        criteria=tuple(criterion_view(c) for c in gate.criteria or () if isinstance(c, Mapping)),
    )


def headline_metrics(state: SessionState) -> tuple[MetricView, ...]:
    found: list[tuple[int, MetricView]] = []
    for st in state.steps.values():
        if st.state not in ("succeeded", "skipped"):
            continue
        for key, value in st.summary.items():
            shown = _format_value(value)
            if shown is None or key.startswith("_"):
                continue
            rank = HEADLINE_KEYS.index(key) if key in HEADLINE_KEYS else None
            if rank is None:
                continue
            found.append((rank, MetricView(f"{st.stage}.{st.step} {key}", shown, st.key)))
    found.sort(key=lambda item: item[0])
    return tuple(m for _, m in found[:HEADLINE_LIMIT])


def _lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return any(hint in name for hint in LOWER_IS_BETTER_HINTS)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def deltas_from(data: Mapping[str, Any]) -> tuple[DeltaRow, ...]:
    """Comparison rows from ``comparison.json`` (``phasef.comparison/1``: a ``deltas`` list with metric, label,
    unit, better, baseline, finetuned, beyond_noise), or from ``baseline``/``finetuned`` maps of numbers."""
    rows: list[DeltaRow] = []
    listed = data.get("deltas")
    if isinstance(listed, list):
        for item in listed:
            if not isinstance(item, Mapping) or not isinstance(item.get("metric"), str):
                continue
            name = str(item.get("label") or item["metric"])
            better = item.get("better")
            beyond = item.get("beyond_noise")
            rows.append(
                DeltaRow(
                    metric=name,
                    baseline=_num(item.get("baseline")),
                    finetuned=_num(item.get("finetuned")),
                    unit=str(item.get("unit") or ""),
                    lower_is_better=better == "lower" if better in ("lower", "higher") else _lower_is_better(name),
                    beyond_noise=beyond if isinstance(beyond, bool) else None,
                )
            )
        return tuple(rows)
    base, tuned = data.get("baseline"), data.get("finetuned")
    if isinstance(base, Mapping) and isinstance(tuned, Mapping):
        for key in dict.fromkeys([*base, *tuned]):
            b, t = _num(base.get(key)), _num(tuned.get(key))
            if b is not None or t is not None:
                rows.append(DeltaRow(str(key), b, t, lower_is_better=_lower_is_better(str(key))))
    return tuple(rows)


def training_curves(state: SessionState) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
    """(step, train loss) and (step, validation loss) of the step that trains (the last one that reported)."""
    train: list[tuple[float, float]] = []
    val: list[tuple[float, float]] = []
    for st in state.steps.values():
        points = [p for p in st.progress if p.get("event") == "train"]
        if not points:
            continue
        train = [(float(p["step"]), float(p["train_loss"])) for p in points if _num(p.get("train_loss")) is not None]
        val = [
            (float(p.get("val_step") or p["step"]), float(p["val_loss"]))
            for p in points
            if _num(p.get("val_loss")) is not None
        ]
    return tuple(train), tuple(val)


Deltas = tuple[tuple[DeltaRow, ...], tuple[str, ...]]
"""The comparison's rows and its residual blockers."""


def read_deltas(session_dir: Path) -> Deltas:
    """The comparison's rows and residual blockers (``report/comparison.json`` first, then other reports)."""
    report = session_dir / "report"
    candidates = sorted(report.glob("*.json"), key=lambda p: p.name != COMPARISON_NAME) if report.is_dir() else []
    for path in candidates:
        try:
            data = orjson.loads(read_bytes_bounded(path, REPORT_LIMIT_BYTES))
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(data, dict):
            rows = deltas_from(data)
            if rows:
                blockers = data.get("residual_blockers")
                listed = tuple(item_text(b) for b in blockers) if isinstance(blockers, list) else ()
                return rows, listed
    return (), ()


def build_session_view(state: SessionState, plan: PlanInfo, deltas: Deltas) -> SessionView:
    """The whole session as the dashboard, gates and report screens show it."""
    by_stage: dict[str, list[StepView]] = {}
    for st in state.steps.values():
        by_stage.setdefault(st.stage, []).append(step_view(st, plan))
    order = [s for s in plan.stage_order if s in by_stage] + [s for s in by_stage if s not in plan.stage_order]
    stages = tuple(StageView(id=s, title=plan.stage_titles.get(s, s), steps=tuple(by_stage[s])) for s in order)
    running = [st for st in state.steps.values() if st.state in ("running", "retrying", "waiting")]
    started = [st for st in state.steps.values() if st.started]
    current = running[0].key if running else (max(started, key=lambda s: s.started or "").key if started else None)
    loss, val_loss = training_curves(state)
    return SessionView(
        name=state.session,
        state=state.state,
        started=state.started,
        final_decision=state.final_decision,
        stages=stages,
        gates=tuple(gate_view(g, plan, state.final_gate) for g in state.gates.values()),
        pass_criteria=tuple(criterion_view(c) for c in state.pass_criteria()),
        metrics=headline_metrics(state),
        deltas=deltas[0],
        residual_blockers=deltas[1],
        loss=loss,
        val_loss=val_loss,
        current_step=current,
        problems=tuple(state.problems),
    )
