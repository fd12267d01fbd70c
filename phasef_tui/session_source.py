"""A live session as the TUI sees it: the journal replayed and tailed, the traces it writes, and the control socket.

A reader thread replays ``journal.jsonl`` into a ``SessionState`` and then tails it (the journal is the only source of
truth, so a client that attaches late, or reattaches, sees everything). The UI takes a ``SessionView`` snapshot at
its frame rate. Decisions go to the supervisor through ``pipeline.control``; the journal then shows who signed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from phasef_tui.data_source import ApprovalError, DataSource, TraceProfile, trace_profile
from phasef_tui.trace_feed import TraceFeed
from pipeline.fsio import open_regular, read_bytes_bounded
from pipeline.journal import JOURNAL_NAME, Event, JournalTail
from pipeline.state import GateState, SessionState, StepState
from pipeline.watch import FileWatch
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

FINGERPRINT_ENV = "PHASEF_KEY_FINGERPRINT"
ROLE_ENV = "PHASEF_ROLE"
COMPARISON_NAME = "comparison.json"
REPORT_LIMIT_BYTES = 64 * 2**20
CONFIG_NAMES = ("config.resolved.toml", "config.toml")
POLL_S = 0.05
"""How often the journal is checked for new events (the frame rate)."""
TRACE_SCAN_S = 2.0
"""How often the artifacts folder is searched for new trace files."""
FINISHED_POLL_S = 1.0
"""How often the journal of a finished session is checked (only for a resume); nothing else is polled then."""
FINISHED_STATES = frozenset({"completed", "failed", "cancelled"})
"""Session states after which nothing changes unless the session is resumed (which appends to the journal)."""
LOG_TAIL_BYTES = 32 << 10
LOG_TAIL_LINES = 200
EVENT_PREFIX = "@@phasef-event "
HEADLINE_LIMIT = 10
PROFILE_TRACES = 4
"""Traces compared on the Report screen (baseline and re-eval, typically)."""

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


def session_config_path(session_dir: Path) -> Path | None:
    for name in CONFIG_NAMES:
        path = session_dir / name
        if path.exists():
            return path
    return None


def _iso_to_unix(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _text(item: Any) -> str:
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
    """Titles and retry counts from the session's resolved config (the journal names steps, not stages)."""

    def __init__(self, path: Path | None) -> None:
        self.stage_titles: dict[str, str] = {}
        self.step_titles: dict[str, str] = {}
        self.retries: dict[str, int] = {}
        self.stage_order: list[str] = []
        if path is None:
            return
        from pipeline.config import ConfigError, StageConfig, read_section

        try:
            stages: dict[str, StageConfig] = read_section(path, "stages").value or {}
        except ConfigError:
            return
        for stage_id, stage in stages.items():
            self.stage_order.append(stage_id)
            self.stage_titles[stage_id] = stage.title
            for step_id, step in stage.steps.items():
                key = f"{stage_id}.{step_id}"
                if step.title:
                    self.step_titles[key] = step.title
                if "retries" in step.model_fields_set:
                    self.retries[key] = step.retries


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
        started_at=_iso_to_unix(st.started),
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
            findings=tuple(_text(f) for f in a.get("findings") or ()),
            blockers=tuple(_text(b) for b in a.get("blockers") or ()),
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
        id=gate.id,
        title=plan.step_titles.get(gate.id) or gate.prompt,
        state=gate.state,
        prompt=gate.prompt,
        opened=gate.opened,
        deadline=gate.deadline,
        evidence=evidence,
        evidence_sha256=gate.evidence_sha256,
        audit_verdict=audit.get("verdict") if gate.audit is not None else None,
        verdicts=verdicts,
        decision=gate.decision,
        operator=gate.operator,
        reason=gate.reason,
        decided_at=gate.decided_at,
        key_fingerprint=gate.key_fingerprint,
        override=gate.override,
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


def looks_like_trace(path: Path) -> bool:
    """A canonical dirty trace starts with a record that has ``kind`` and ``episode`` (cheap: first 4 KB)."""
    try:
        with open_regular(path) as fh:
            head = fh.read(4096)
    except OSError:
        return False
    first = head.split(b"\n", 1)[0]
    return b'"kind"' in first and b'"episode"' in first


class SessionSource(DataSource):
    """A session folder: journal (replayed, tailed), traces under ``artifacts/``, decisions via the control socket."""

    def __init__(
        self,
        session_dir: Path,
        *,
        operator: str,
        control_socket: Path | None = None,
        key_fingerprint: str | None = None,
        role: str | None = None,
    ) -> None:
        super().__init__()
        self.session_dir = Path(session_dir)
        self.journal_path = self.session_dir / JOURNAL_NAME
        if not self.journal_path.exists():
            raise FileNotFoundError(f"{self.journal_path}: no journal (is this a session folder?)")
        self.operator = operator
        self.control_socket = control_socket
        # an SSH operator's identity comes from the server's authorized_keys entry, through the environment
        self.key_fingerprint = key_fingerprint or os.environ.get(FINGERPRINT_ENV)
        self.role = role or os.environ.get(ROLE_ENV)
        who = f"{operator} ({self.role})" if self.role else operator
        self.title = f"session {self.session_dir.name} · {who}"
        self.plan = PlanInfo(session_config_path(self.session_dir))
        self.state = SessionState(session=self.session_dir.name)
        self.lock = threading.Lock()
        self.version = 0
        self._tail = JournalTail(self.journal_path)
        self._traces: list[Path] = []
        self._feed: TraceFeed | None = None
        self._feeds: dict[Path, TraceFeed] = {}
        self._feeds_lock = threading.Lock()
        self._chosen_trace: Path | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: FileWatch | None = None
        self._view_cache: tuple[int, SessionView] | None = None
        self._session_mark = -1
        self._log_cache: tuple[Path, int, tuple[str, ...]] | None = None
        self._deltas: tuple[tuple[DeltaRow, ...], tuple[str, ...]] = ((), ())
        self._last_trace_scan = 0.0
        self.read_journal()  # the first screen shows the whole history

    # -- journal -----------------------------------------------------------------------------------------------------
    def read_journal(self) -> bool:
        """Apply events appended since the last call; True if any."""
        items = self._tail.poll()
        if not items:
            return False
        with self.lock:
            for item in items:
                if isinstance(item, Event):
                    self.state.apply(item)
                else:
                    self.state.problems.append(str(item))
            self.version += 1
        return True

    @property
    def finished(self) -> bool:
        """The journal says the session ended (completed, failed or cancelled)."""
        return self.state.state in FINISHED_STATES

    @property
    def clocks_running(self) -> bool:
        return self.state.state in ("running", "waiting")

    def settled(self) -> bool:
        """A finished session whose open traces are indexed to the end: the screens have nothing to redraw."""
        if not self.finished:
            return False
        with self._feeds_lock:
            return all(feed.settled for feed in self._feeds.values())

    def _run(self) -> None:
        was_finished = False
        while not self._stop.is_set():
            changed = self.read_journal()
            finished = self.finished
            if finished and not was_finished:
                self.scan_traces()  # the last trace files and reports, once
                self._follow_feeds(False)
            elif was_finished and not finished:  # resumed
                self._follow_feeds(True)
            if changed and was_finished:
                self._wake()
            was_finished = finished
            if finished:
                self._stop.wait(FINISHED_POLL_S)
                continue
            now = time.monotonic()
            if now - self._last_trace_scan >= TRACE_SCAN_S:
                self._last_trace_scan = now
                self.scan_traces()
            if self._watch is not None:
                self._watch.wait(POLL_S)  # woken by a write to the journal (watchfiles), else polls
            else:
                self._stop.wait(POLL_S)

    def _follow_feeds(self, follow: bool) -> None:
        with self._feeds_lock:
            feeds = list(self._feeds.values())
        for feed in feeds:
            if follow:
                feed.resume_following()
            else:
                feed.stop_following()

    def start(self) -> None:
        self.scan_traces()
        if self._thread is None:
            self._watch = FileWatch(self.journal_path)
            self._thread = threading.Thread(target=self._run, name="journal-reader", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        for feed in self._feeds.values():
            feed.stop()
        self._feeds.clear()
        self._feed = None

    @property
    def has_session(self) -> bool:
        return True

    # -- traces -------------------------------------------------------------------------------------------------------
    def scan_traces(self) -> None:
        root = self.session_dir / "artifacts"
        found = sorted(
            (p for p in root.rglob("*.jsonl") if looks_like_trace(p)) if root.is_dir() else [],
            key=lambda p: str(p),
        )
        deltas = self._read_deltas()
        with self.lock:
            if found != self._traces:
                self._traces = found
                self.version += 1
            if deltas != self._deltas:
                self._deltas = deltas
                self.version += 1

    def _read_deltas(self) -> tuple[tuple[DeltaRow, ...], tuple[str, ...]]:
        """The comparison's rows and residual blockers (``report/comparison.json`` first, then other reports)."""
        report = self.session_dir / "report"
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
                    listed = tuple(_text(b) for b in blockers) if isinstance(blockers, list) else ()
                    return rows, listed
        return (), ()

    def trace_files(self) -> list[Path]:
        with self.lock:
            return list(self._traces)

    @property
    def feed(self) -> TraceFeed | None:
        files = self.trace_files()
        if not files:
            return self._feed
        # the operator's choice, else the newest file (the one being written)
        wanted = self._chosen_trace if self._chosen_trace in files else max(files, key=_mtime)
        if self._feed is None or self._feed.path != wanted:
            self._open(wanted)
        return self._feed

    def _open(self, path: Path) -> None:
        self._feed = self._feed_for(path)

    def _feed_for(self, path: Path) -> TraceFeed:
        """Feeds stay open once made (switching back is instant; the Report compares several traces)."""
        with self._feeds_lock:  # (the Report screen asks from a worker thread)
            feed = self._feeds.get(path)
            if feed is None:
                rel = path.relative_to(self.session_dir) if path.is_relative_to(self.session_dir) else path
                feed = TraceFeed(path, follow=True, display_name=str(rel))
                if self.finished:
                    feed.stop_following()
                feed.start()
                self._feeds[path] = feed
            return feed

    def profiles(self) -> list[TraceProfile]:
        """Per-tick figures of every trace of the session (at most ``PROFILE_TRACES``), oldest first."""
        files = sorted(self.trace_files(), key=_mtime)[-PROFILE_TRACES:]
        return [trace_profile(self._feed_for(p), p.parent.name + "/" + p.name) for p in files]

    def select_trace(self, path: Path) -> None:
        self._chosen_trace = path
        self._open(path)

    # -- views --------------------------------------------------------------------------------------------------------
    def session_view(self, now: float) -> SessionView:
        with self.lock:
            if self._view_cache is not None and self._view_cache[0] == self.version:
                return self._view_cache[1]
            view = self._build_view()
            self._view_cache = (self.version, view)
            return view

    def _build_view(self) -> SessionView:
        state = self.state
        plan = self.plan
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
            deltas=self._deltas[0],
            residual_blockers=self._deltas[1],
            loss=loss,
            val_loss=val_loss,
            current_step=current,
            problems=tuple(state.problems),
        )

    def log_tail(self, step_key: str | None) -> tuple[str, ...]:
        """The last lines of a step's log (progress-event lines left out; they are in the journal)."""
        if step_key is None:
            return ()
        with self.lock:
            st = self.state.steps.get(step_key)
            log = st.log if st is not None else None
        if not log:
            return ()
        path = Path(log) if Path(log).is_absolute() else self.session_dir / log
        try:
            size = path.stat().st_size
        except OSError:
            return ()
        if self._log_cache is not None and self._log_cache[:2] == (path, size):
            return self._log_cache[2]
        try:
            fh = open_regular(path)
        except OSError:
            return ()
        with fh:
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            data = fh.read(LOG_TAIL_BYTES)
        lines = data.decode("utf-8", "replace").splitlines()
        if size > LOG_TAIL_BYTES and lines:
            lines = lines[1:]  # the first one is cut
        kept = tuple(ln for ln in lines if not ln.startswith(EVENT_PREFIX))[-LOG_TAIL_LINES:]
        self._log_cache = (path, size, kept)
        return kept

    def poll(self) -> set[str]:
        changed = super().poll()
        if self.version != self._session_mark:
            self._session_mark = self.version
            changed.add("session")
        return changed

    # -- decisions ----------------------------------------------------------------------------------------------------
    def approve(self, gate_id: str, decision: str, reason: str, *, override: bool = False) -> str:
        """Sign a decision through the supervisor; returns its confirmation, raises ``ApprovalError`` if refused.

        ``override`` is the operator's confirmed request to sign GO at the final gate over unmet pass criteria."""
        from pipeline.control import ControlClient
        from pipeline.errors import ControlError

        with self.lock:
            gate = self.state.gates.get(gate_id)
            evidence_sha = gate.evidence_sha256 if gate is not None else None
        client = ControlClient(self.session_dir)
        if self.control_socket is not None:
            client.path = self.control_socket
        if not client.available():
            raise ApprovalError("no supervisor is running for this session (its control socket is gone)")
        try:
            data = client.request(
                "approve",
                gate=gate_id,
                decision=decision,
                operator=self.operator,
                reason=reason,
                evidence_sha256=evidence_sha,
                key_fingerprint=self.key_fingerprint,
                role=self.role,
                override=override or None,
            )
        except ControlError as exc:
            raise ApprovalError(f"refused: {exc}") from exc
        except OSError as exc:
            raise ApprovalError(f"cannot reach the supervisor: {exc}") from exc
        note = ""
        if data.get("override"):
            note = " as GO-OVERRIDE of unmet pass criteria" if data.get("final") else " (override of the audit verdict)"
        return f"{data.get('gate', gate_id)}: {str(data.get('decision', decision)).upper()} signed by " + (
            f"{data.get('operator', self.operator)}{note}"
        )

    def step_action(self, op: str, step: str, reason: str) -> str:
        """Retry or cancel a step through the supervisor (approvers only; the journal records the operator)."""
        from pipeline.control import ControlClient
        from pipeline.errors import ControlError

        if op not in ("retry", "cancel"):
            raise ApprovalError(f"unknown step action {op!r}")
        if self.role is not None and self.role != "approver":
            raise ApprovalError(f"refused: {self.operator} has role {self.role!r}; only approvers can {op} steps")
        client = ControlClient(self.session_dir)
        if self.control_socket is not None:
            client.path = self.control_socket
        if not client.available():
            raise ApprovalError("no supervisor is running for this session (its control socket is gone)")
        try:
            if op == "retry":
                client.request("retry", step=step, operator=self.operator, role=self.role, reason=reason)
            else:
                client.request("cancel", step=step, operator=self.operator, role=self.role)
        except ControlError as exc:
            raise ApprovalError(f"refused: {exc}") from exc
        except OSError as exc:
            raise ApprovalError(f"cannot reach the supervisor: {exc}") from exc
        return f"{step}: {'retry' if op == 'retry' else 'cancel'} requested by {self.operator}"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
