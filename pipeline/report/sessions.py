"""Every session at a glance (``phasef sessions``): one row per session folder, rebuilt by replaying its journal.

A row holds the session's id, state, final decision, the models it served or evaluated, when it started and how long
it ran, and the key metrics of its last evaluation (schema-violation rate, MTTR, solved share). The metrics come from
the summary the evaluation step journaled when it succeeded, so listing a hundred sessions reads a hundred journals
and nothing else. A session whose journal cannot be read is still listed, with the reason.

The evaluation steps of a session are found here too (``eval_steps``): a step whose journaled summary names an
evaluation report (``report``, with ``ticksObserved``); ``pipeline.report.cross`` resolves ``SESSION:STAGE.step``
through them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.clock import unix_seconds
from pipeline.journal import JOURNAL_NAME, Event, is_locked, read_journal
from pipeline.state import SessionState, StepState, replay

SESSIONS_SCHEMA = "phasef.sessions/1"


@dataclass(frozen=True)
class EvalStep:
    """A succeeded evaluation step of a session and the report it wrote."""

    key: str
    report: Path
    summary: dict[str, Any]
    finished: str | None
    outputs: dict[str, str]
    """The step's output hashes as journaled (path relative to the session -> sha256)."""


def _report_path(session_dir: Path, st: StepState) -> Path | None:
    """Where the step's eval report is now: the path its summary named when inside this session folder, else the
    same name under the step's artifacts (the session folder was moved or copied), else the named path."""
    raw = st.summary.get("report")
    if not isinstance(raw, str) or not raw:
        return None
    named = Path(raw)
    if not named.is_absolute():
        named = session_dir / named
    if named.is_relative_to(session_dir) and named.is_file():
        return named
    moved = session_dir / "artifacts" / st.stage / st.step / named.name
    return moved if moved.is_file() else named


def eval_steps(session_dir: Path, state: SessionState) -> list[EvalStep]:
    """The session's succeeded evaluation steps, in the order they finished."""
    found = []
    for st in state.steps.values():
        if st.state not in ("succeeded", "skipped") or "ticksObserved" not in st.summary:
            continue
        path = _report_path(session_dir, st)
        if path is not None:
            found.append(EvalStep(st.key, path, dict(st.summary), st.finished, dict(st.outputs)))
    return sorted(found, key=lambda e: e.finished or "")


def _models(events: list[Event], evals: list[EvalStep]) -> list[str]:
    """Models the session served (its services) and evaluated (its reports' labels), in order of appearance."""
    out: dict[str, None] = {}
    for ev in events:
        if ev.type == "service_started":
            model = ev.payload.get("model")
            name = ev.payload.get("name")
            if isinstance(model, str) and model:
                out[f"{name}:{model}" if name else model] = None
    for ev_step in evals:
        for key in ("model", "modelLabel"):
            value = ev_step.summary.get(key)
            if isinstance(value, str) and value:
                out[value] = None
    return list(out)


def _ratio(num: Any, den: Any) -> float | None:
    if isinstance(num, int | float) and isinstance(den, int | float) and not isinstance(num, bool) and den:
        return float(num) / float(den)
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def session_row(session_dir: Path, now: float | None = None) -> dict[str, Any]:
    """One row of ``phasef sessions --json`` (``error`` set, the rest empty, when the journal cannot be read)."""
    row: dict[str, Any] = {
        "id": session_dir.name,
        "path": str(session_dir),
        "state": None,
        "final_decision": None,
        "exit_code": None,
        "models": [],
        "started": None,
        "finished": None,
        "duration_s": None,
        "steps": 0,
        "failed_steps": [],
        "evals": [],
        "metrics": {"schema_violation_rate": None, "mttr_s": None, "mttr_ticks": None, "solved_share": None},
        "metrics_from": None,
        "problems": [],
        "error": None,
    }
    try:
        items = list(read_journal(session_dir / JOURNAL_NAME))
    except OSError as exc:
        row["error"] = f"{session_dir / JOURNAL_NAME}: cannot read: {exc}"
        return row
    state = replay(items, session_dir.name)
    if state.state in ("running", "waiting") and state.supervisor_pid is not None and not is_locked(session_dir):
        state.state = "interrupted"  # (as ``load_state`` says it: the supervisor is gone)
    events = [e for e in items if isinstance(e, Event)]
    evals = eval_steps(session_dir, state)
    start, end = unix_seconds(state.started), unix_seconds(state.finished)
    if start is not None and end is None and state.state in ("running", "waiting"):
        end = time.time() if now is None else now
    row.update(
        state=state.state,
        final_decision=state.final_decision,
        exit_code=state.exit_code,
        models=_models(events, evals),
        started=state.started,
        finished=state.finished,
        duration_s=round(end - start, 3) if start is not None and end is not None else None,
        steps=len(state.steps),
        failed_steps=[k for k, s in state.steps.items() if s.state in ("failed", "blocked")],
        evals=[e.key for e in evals],
        problems=list(state.problems),
    )
    if evals:
        last = evals[-1].summary
        row["metrics"] = {
            "schema_violation_rate": _number(last.get("schemaViolationRate")),
            "mttr_s": _number(last.get("mttrSeconds")),
            "mttr_ticks": _number(last.get("mttrTicks")),
            "solved_share": _ratio(last.get("solved"), last.get("episodes")),
        }
        row["metrics_from"] = evals[-1].key
    return row


def list_rows(root: Path, now: float | None = None) -> list[dict[str, Any]]:
    """A row for every session folder under ``root`` (folders holding a journal), newest start first."""
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and (p / JOURNAL_NAME).is_file()]
    rows = [session_row(p, now) for p in folders]
    return sorted(rows, key=lambda r: (r["started"] or "", r["id"]), reverse=True)


def sessions_doc(root: Path, now: float | None = None) -> dict[str, Any]:
    return {"schema": SESSIONS_SCHEMA, "sessions_dir": str(root), "sessions": list_rows(root, now)}
