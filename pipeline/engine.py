"""The asyncio DAG scheduler: runs a plan's steps as soon as their needs are met, within pool limits.

The engine decides when a step runs, how often it is retried and when it is cancelled; everything else is a module
beside it (see docs/architecture.md): paths (``layout``), the journal writer (``recorder``), processes
(``jobs.executor``: start, reattach, signal; ``jobs.watch``: log, timeout, outcome), gates, fingerprints, services.
Every state change goes through ``record``: journaled (fsynced), applied to ``state``, then broadcast.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pipeline.clock import iso, now, parse_iso
from pipeline.config import PhasefConfig, dump_config
from pipeline.errors import ControlError
from pipeline.fingerprints import Fingerprints
from pipeline.fsio import atomic_write_text
from pipeline.gates import Gates
from pipeline.hashing import MISSING, text_sha256
from pipeline.jobs.attempt import Attempts
from pipeline.jobs.executor import JobHandle, get_executor
from pipeline.jobs.local import is_same_process, kill_group
from pipeline.jobs.watch import StepOutcome
from pipeline.journal import Journal, read_journal
from pipeline.layout import SessionLayout
from pipeline.parts import SessionParts
from pipeline.recorder import Recorder
from pipeline.report import criteria
from pipeline.retries import Retries
from pipeline.service_pool import ServicePool
from pipeline.services import ServiceError
from pipeline.state import SessionState, StepState, replay


@dataclass
class RunResult:
    state: str
    exit_code: int
    final_decision: str | None
    error: str | None = None


def select_steps(cfg: PhasefConfig, deps: dict[str, list[str]], until: str | None) -> list[str]:
    """The steps a run selects: all of them, or with ``--until STAGE`` that stage's steps and what they need."""
    keys = cfg.step_keys()
    if until is None:
        return keys
    if until not in cfg.stages:
        raise ValueError(f"--until names unknown stage {until!r}; stages: {', '.join(cfg.stages)}")
    wanted: set[str] = set()
    todo = [f"{until}.{s}" for s in cfg.stages[until].steps]
    while todo:
        k = todo.pop()
        if k not in wanted:
            wanted.add(k)
            todo.extend(deps[k])
    return [k for k in keys if k in wanted]


class Engine:
    """Runs (or resumes) one session's plan: the DAG, pools, retries, cancel; everything else is delegated."""

    def __init__(
        self,
        cfg: PhasefConfig,
        *,
        session_dir: Path,
        project_dir: Path,
        config_path: Path | None = None,
        until: str | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.cfg = cfg
        self.layout = SessionLayout(session_dir, project_dir)
        self.session_dir = self.layout.session_dir
        self.project_dir = self.layout.project_dir
        self.config_path = config_path
        self.journal = journal or Journal(self.session_dir)
        events = list(read_journal(self.journal.path)) if self.journal.path.exists() else []
        self.state: SessionState = replay(events, self.session_dir.name)
        self.recorder = Recorder(self.journal, self.state)
        self.record = self.recorder.record
        self.subscribers = self.recorder.subscribers
        self.listeners = self.recorder.listeners
        self.subscribe = self.recorder.subscribe
        self.unsubscribe = self.recorder.unsubscribe
        self.deps = cfg.dependencies()
        self.selected = select_steps(cfg, self.deps, until)
        self.pools = {name: asyncio.Semaphore(size) for name, size in cfg.pools.items()}
        self._cancel_steps: set[str] = set()
        self._cancelled = False
        self.services = ServicePool(cfg, self.layout, self.recorder)
        self._wake = asyncio.Event()
        self.resolved_config = self.layout.resolved_config
        self._orphans: dict[str, tuple[JobHandle, int]] = {}
        self.fingerprints = Fingerprints(cfg, self.layout)
        self.fingerprint = self.fingerprints.fingerprint
        parts = SessionParts(cfg, self.layout, self.recorder, lambda key: self._cancelled or key in self._cancel_steps)
        self.attempts = Attempts(parts, get_executor("local"))
        self.gates = Gates(parts)
        self.retries = Retries(parts, self.selected, self.deps)
        self.gate_evidence = self.gates.evidence
        self.decide = self.gates.decide

    # -- run ----------------------------------------------------------------------------------------------------
    async def run(self) -> RunResult:
        import tomli_w

        cfg_text = tomli_w.dumps(dump_config(self.cfg))
        atomic_write_text(self.resolved_config, cfg_text)
        resumed = self.state.last_seq > 0
        orphans = {
            k: (JobHandle.model_validate(s.handle or {"pid": s.pid}), s.attempts)
            for k, s in self.state.steps.items()
            if s.state in ("running",) and s.pid
        }
        stale_services = [s for s in self.state.services.values() if s.state == "running" and s.pid]
        plan = [
            {"stage": s, "step": t, "kind": c.kind, "title": c.title}
            for s, t, c in self.cfg.iter_steps()
            if f"{s}.{t}" in self.selected
        ]
        self.record(
            "session_started",
            payload={
                "pid": os.getpid(),
                "resume": resumed,
                "config_sha256": text_sha256(cfg_text),
                "config_path": str(self.config_path) if self.config_path else None,
                "final_gate": self.cfg.final_gate_key(),
                "plan": plan,
                "argv": sys.argv,
            },
        )
        for svc in stale_services:
            if svc.pid and is_same_process(svc.pid, svc.create_time):
                kill_group(svc.pid, signal.SIGTERM)
        self._orphans = {k: v for k, v in orphans.items() if k in self.selected}
        try:
            await self._schedule()
        finally:
            await self.services.stop_all()
        return self._finish()

    def _terminal(self, key: str) -> bool:
        st = self.state.steps.get(key)
        return st is not None and st.state in ("succeeded", "skipped", "failed", "cancelled", "blocked")

    def _ok(self, key: str) -> bool:
        st = self.state.steps.get(key)
        return st is not None and st.state in ("succeeded", "skipped")

    async def _schedule(self) -> None:
        """Start each selected step once its needs finished well in this run; block it if one did not."""
        tasks: dict[str, asyncio.Future[None]] = {}
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            self.retries.requeue(tasks)
            progressed = False
            for key in self.selected:
                if key in tasks or self._cancelled:
                    continue
                deps = self.deps[key]
                if not all(d in tasks and tasks[d].done() for d in deps):
                    continue
                bad = [d for d in deps if not self._ok(d)]
                if bad:
                    self.record(
                        "step_blocked",
                        key,
                        payload={"reason": f"needs {', '.join(bad)}, which did not succeed"},
                    )
                    done: asyncio.Future[None] = loop.create_future()
                    done.set_result(None)
                    tasks[key] = done
                else:
                    tasks[key] = asyncio.create_task(self._guarded(key), name=key)
                progressed = True
            live: list[asyncio.Future[Any]] = [t for t in tasks.values() if not t.done()]
            if not live:
                if progressed:
                    continue
                break
            wake: asyncio.Future[Any] = asyncio.create_task(self._wake.wait())
            await asyncio.wait([*live, wake], return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
        for key in self.selected:
            if key not in tasks and self._cancelled:
                self.record("step_cancelled", key, payload={"reason": "run cancelled before the step started"})

    async def _guarded(self, key: str) -> None:
        try:
            await self._run_step(key)
        except Exception as exc:  # an engine bug must fail the step, not the supervisor
            self.record("step_failed", key, payload={"error": f"engine error: {type(exc).__name__}: {exc}"})
        finally:
            self._wake.set()

    def _finish(self) -> RunResult:
        st = self.state
        failed = [k for k in self.selected if st.steps.get(k) and st.steps[k].state in ("failed", "blocked")]
        gate_nogo = [g for g in st.gates.values() if g.decision == "no-go" and g.id in self.selected]
        final = self.cfg.final_gate_key()
        decision: str | None = None
        if gate_nogo:
            decision = "NO-GO"
        elif final and final in self.selected:
            decision = criteria.final_outcome(st, final)
        error = None
        cancelled = [k for k in self.selected if st.steps.get(k) and st.steps[k].state == "cancelled"]
        if self._cancelled or cancelled:
            state, code = "cancelled", 1
            error = "cancelled: " + (", ".join(cancelled) if cancelled else "the run")
        elif gate_nogo:
            state, code = "completed", 3
            failed_steps = [k for k in failed if k not in st.gates]
            error = "; ".join(f"{g.id}: NO-GO ({g.reason})" for g in gate_nogo)
            if failed_steps:
                error += "; also failed: " + ", ".join(failed_steps)
        elif failed:
            state, code = "failed", 1
            error = "; ".join(f"{k}: {st.steps[k].error}" for k in failed)
        else:
            state, code = "completed", criteria.EXIT_GO_OVERRIDE if decision == "GO-OVERRIDE" else 0
        report = criteria.write_final_report(self.cfg, self.session_dir, self.project_dir, st, decision)
        self.record(
            "run_finished",
            payload={"state": state, "exit_code": code, "final_decision": decision, "error": error, "report": report},
        )
        return RunResult(state, code, decision, error)

    # -- one step -------------------------------------------------------------------------------------------

    async def _run_step(self, key: str) -> None:
        sc = self.cfg.step(key)
        if sc.kind == "gate":
            await self.gates.run(key, sc)
            return
        st = self.state.steps.get(key) or StepState(stage=key.split(".")[0], step=key.split(".", 1)[1])
        fp, problems = self.fingerprints.fingerprint(key)
        reason = self.fingerprints.cache_hit(key, self.state.steps.get(key), fp)
        if reason is not None:
            self.record("step_skipped", key, payload={"reason": reason, "fingerprint": fp, "outputs": st.outputs})
            self._wake.set()
            return
        problems += [f"declared output {p}" for p in self.layout.escaped_outputs(sc.outputs)]
        if problems:
            self.record("step_failed", key, attempt=st.attempts or 1, payload={"error": "; ".join(problems)})
            return
        attempt = st.attempts
        failures = 0
        orphan = self._orphans.pop(key, None)
        while True:
            if orphan is not None:
                attempt = orphan[1]
                outcome = await self.attempts.reattach(key, sc, orphan)
                orphan = None
                if outcome is None:  # could not reattach: a fresh attempt
                    continue
            else:
                attempt += 1
                async with self.pools[sc.pool]:
                    if self._cancelled or key in self._cancel_steps:
                        self.record("step_cancelled", key, attempt=attempt, payload={"reason": "cancelled"})
                        return
                    try:
                        services = await self.services.acquire(sc)
                    except ServiceError as exc:
                        outcome = StepOutcome(False, error=f"service failed: {exc}")
                        services = {}
                    else:
                        outcome = await self.attempts.start(key, sc, attempt, fp, services)
            if outcome.cancelled:
                self.record("step_cancelled", key, attempt=attempt, payload={"reason": outcome.error or "cancelled"})
                await self._release_services(key)
                return
            outcome, outputs = self._take_outputs(key, outcome)
            if outcome.ok:
                payload = {"fingerprint": fp, "outputs": outputs, "summary": outcome.summary}
                self.record(
                    "step_succeeded", key, attempt=attempt, payload={**payload, "duration_s": self._duration(key)}
                )
                await self._release_services(key)
                return
            failures += 1
            failed: dict[str, Any] = {"error": outcome.error, "exit_code": outcome.exit_code}
            failed["timed_out"] = outcome.timed_out
            retry = failures <= sc.retries and not self._cancelled
            delay = min(sc.backoff * (2 ** (failures - 1)), sc.backoff_max)
            delay += delay * sc.jitter * random.random()
            if retry:
                failed |= {"retry_at": iso(now() + timedelta(seconds=delay)), "retry_in_s": round(delay, 3)}
            self.record("step_failed", key, attempt=attempt, payload={**failed, "duration_s": self._duration(key)})
            if retry:
                await self._sleep_cancellable(key, delay)
                if not (self._cancelled or key in self._cancel_steps):
                    continue
                self.record("step_cancelled", key, attempt=attempt, payload={"reason": "cancelled"})
            await self._release_services(key)
            return

    def _take_outputs(self, key: str, outcome: StepOutcome) -> tuple[StepOutcome, dict[str, str]]:
        """A successful attempt's output hashes, or a failed outcome naming the output that cannot be taken."""
        if not outcome.ok:
            return outcome, {}
        problem = self.fingerprints.output_problem(key, self.attempts.started_ns(key))
        outputs = {} if problem else self.fingerprints.outputs(key)
        missing = [p for p, h in outputs.items() if h == MISSING]
        if missing:
            problem = f"declared output missing: {', '.join(missing)}"
        return (StepOutcome(False, error=problem), {}) if problem else (outcome, outputs)

    def _duration(self, key: str) -> float | None:
        st = self.state.steps.get(key)
        if st is None or st.started is None:
            return None
        started = parse_iso(st.started)
        return round((now() - started).total_seconds(), 3)

    async def _sleep_cancellable(self, key: str, delay: float) -> None:
        end = time.monotonic() + delay
        while time.monotonic() < end and not self._cancelled and key not in self._cancel_steps:
            await asyncio.sleep(min(0.1, end - time.monotonic()))

    async def _release_services(self, key: str) -> None:
        """Stop each service that no unfinished selected step other than ``key`` needs any more."""
        await self.services.release(
            lambda name: any(
                k != key and name in self.cfg.step(k).services and not self._terminal(k) for k in self.selected
            )
        )

    # -- cancel ---------------------------------------------------------------------------------------------
    def cancel(self, step: str | None = None, *, operator: str = "unknown", role: str | None = None) -> dict[str, Any]:
        if role is not None and role != "approver":
            raise ControlError(f"operator {operator} has role {role!r}; only approvers can cancel")
        if step is None:
            self.record("run_cancel_requested", payload={"operator": operator})
            self._cancelled = True
        else:
            if step not in self.state.steps:
                raise ControlError(f"no step {step!r}")
            self.record("step_cancel_requested", step, payload={"operator": operator})
            self._cancel_steps.add(step)
        self._wake.set()
        return {"cancelled": step or "run"}

    # -- retry ----------------------------------------------------------------------------------------------
    def retry(self, step: str, *, operator: str, role: str | None = None, reason: str = "") -> dict[str, Any]:
        """Run a failed or cancelled step again in this run (``pipeline.retries``); the steps blocked on it too."""
        data = self.retries.request(step, operator=operator, role=role, reason=reason, run_cancelled=self._cancelled)
        self._cancel_steps.discard(step)
        self._wake.set()
        return data
