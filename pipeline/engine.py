"""The asyncio DAG executor: runs a plan's steps as soon as their needs are met, within pool limits.

Every state change goes through ``Engine.record``: it is appended (fsynced) to the journal, applied to the in-memory
``SessionState`` and then broadcast to subscribers, in that order, so nothing a client sees can be lost in a crash.
Each step runs in its own process group behind a tiny ``sh`` wrapper that writes the exit status to a file; the
step's output goes straight to a log file that the engine tails. That is what lets a resumed supervisor reattach to
a step whose process outlived the crash (its status file and log are still there) instead of starting it again.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.config import PhasefConfig, StepConfig, dump_config
from pipeline.errors import ControlError
from pipeline.fingerprints import Fingerprints
from pipeline.fsio import atomic_write_text
from pipeline.gates import Gates
from pipeline.hashing import (
    MISSING,
    text_sha256,
)
from pipeline.jobs.context import ServiceInfo
from pipeline.jobs.executor import Executor, Job, JobHandle, get_executor
from pipeline.jobs.local import kill_group, pid_alive
from pipeline.jobs.spec import build_spec, shown_command
from pipeline.jobs.watch import JobWatch, StepOutcome
from pipeline.journal import Journal, read_journal
from pipeline.layout import SessionLayout
from pipeline.recorder import Recorder
from pipeline.registry import SERVICE_KINDS, load_object
from pipeline.services import Service, ServiceError
from pipeline.state import SessionState, StepState, replay


@dataclass
class RunResult:
    state: str
    exit_code: int
    final_decision: str | None
    error: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Engine:
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
        self.selected = self._select(until)
        self.pools = {name: asyncio.Semaphore(size) for name, size in cfg.pools.items()}
        self.executor: Executor = get_executor("local")
        self._running: dict[str, Job] = {}
        self._cancel_steps: set[str] = set()
        self._cancelled = False
        self._services: dict[str, Service] = {}
        self._service_info: dict[str, ServiceInfo] = {}
        self._service_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.resolved_config = self.layout.resolved_config
        self._orphans: dict[str, tuple[JobHandle, int]] = {}
        self._launched_ns: dict[str, int] = {}
        self.fingerprints = Fingerprints(cfg, self.layout)
        self.fingerprint = self.fingerprints.fingerprint
        self.gates = Gates(cfg, self.layout, self.recorder, lambda key: self._cancelled or key in self._cancel_steps)
        self.gate_evidence = self.gates.evidence
        self.decide = self.gates.decide

    # -- selection ------------------------------------------------------------------------------------------
    def _select(self, until: str | None) -> list[str]:
        keys = self.cfg.step_keys()
        if until is None:
            return keys
        if until not in self.cfg.stages:
            raise ValueError(f"--until names unknown stage {until!r}; stages: {', '.join(self.cfg.stages)}")
        wanted: set[str] = set()
        todo = [f"{until}.{s}" for s in self.cfg.stages[until].steps]
        while todo:
            k = todo.pop()
            if k not in wanted:
                wanted.add(k)
                todo.extend(self.deps[k])
        return [k for k in keys if k in wanted]

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
        stale_services = [s.pid for s in self.state.services.values() if s.state == "running" and s.pid]
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
        for pid in stale_services:
            if pid and pid_alive(pid):
                kill_group(pid, signal.SIGTERM)
        self._orphans = {k: v for k, v in orphans.items() if k in self.selected}
        try:
            await self._schedule()
        finally:
            await self._stop_all_services()
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
        elif final and final in self.selected and st.gates.get(final) and st.gates[final].decision == "go":
            decision = "GO"
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
            state, code = "completed", 0
        self.record(
            "run_finished",
            payload={"state": state, "exit_code": code, "final_decision": decision, "error": error},
        )
        return RunResult(state, code, decision, error)

    # -- one step -------------------------------------------------------------------------------------------
    def _step_cfg(self, key: str) -> StepConfig:
        return self.cfg.step(key)

    async def _run_step(self, key: str) -> None:
        sc = self._step_cfg(key)
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
                outcome = await self._reattach_or_rerun(key, sc, orphan)
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
                        services = await self._acquire_services(key, sc)
                    except ServiceError as exc:
                        outcome = StepOutcome(False, error=f"service failed: {exc}")
                        services = {}
                    else:
                        outcome = await self._run_process(key, sc, attempt, fp, services)
            if outcome.cancelled:
                self.record("step_cancelled", key, attempt=attempt, payload={"reason": outcome.error or "cancelled"})
                await self._release_services(key)
                return
            outputs: dict[str, str] = {}
            if outcome.ok:
                problem = self.fingerprints.output_problem(key, self._attempt_started_ns(key))
                outputs = {} if problem else self.fingerprints.outputs(key)
                missing = [p for p, h in outputs.items() if h == MISSING]
                if missing:
                    problem = f"declared output missing: {', '.join(missing)}"
                if problem:
                    outcome = StepOutcome(False, error=problem)
            if outcome.ok:
                duration = self._duration(key)
                self.record(
                    "step_succeeded",
                    key,
                    attempt=attempt,
                    payload={
                        "fingerprint": fp,
                        "outputs": outputs,
                        "summary": outcome.summary,
                        "duration_s": duration,
                    },
                )
                await self._release_services(key)
                return
            failures += 1
            if failures <= sc.retries and not self._cancelled:
                delay = min(sc.backoff * (2 ** (failures - 1)), sc.backoff_max)
                delay += delay * sc.jitter * random.random()
                retry_at = _iso(_now() + timedelta(seconds=delay))
                self.record(
                    "step_failed",
                    key,
                    attempt=attempt,
                    payload={
                        "error": outcome.error,
                        "exit_code": outcome.exit_code,
                        "timed_out": outcome.timed_out,
                        "retry_at": retry_at,
                        "retry_in_s": round(delay, 3),
                        "duration_s": self._duration(key),
                    },
                )
                await self._sleep_cancellable(key, delay)
                if self._cancelled or key in self._cancel_steps:
                    self.record("step_cancelled", key, attempt=attempt, payload={"reason": "cancelled"})
                    await self._release_services(key)
                    return
                continue
            self.record(
                "step_failed",
                key,
                attempt=attempt,
                payload={
                    "error": outcome.error,
                    "exit_code": outcome.exit_code,
                    "timed_out": outcome.timed_out,
                    "duration_s": self._duration(key),
                },
            )
            await self._release_services(key)
            return

    def _duration(self, key: str) -> float | None:
        st = self.state.steps.get(key)
        if st is None or st.started is None:
            return None
        started = datetime.fromisoformat(st.started.replace("Z", "+00:00"))
        return round((_now() - started).total_seconds(), 3)

    def _attempt_started_ns(self, key: str) -> int:
        """When the current attempt started, less the slack of the coarse clock that stamps files. After a restart
        only the journal knows: the event is written just after the process starts, so a second of slack then."""
        if key in self._launched_ns:
            return self._launched_ns[key] - 50_000_000
        started = self.state.steps[key].started
        if started is None:
            return 0
        return int(datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp() * 1e9) - 1_000_000_000

    async def _sleep_cancellable(self, key: str, delay: float) -> None:
        end = time.monotonic() + delay
        while time.monotonic() < end and not self._cancelled and key not in self._cancel_steps:
            await asyncio.sleep(min(0.1, end - time.monotonic()))

    async def _run_process(
        self, key: str, sc: StepConfig, attempt: int, fp: str, services: dict[str, ServiceInfo]
    ) -> StepOutcome:
        self.layout.artifacts(key).mkdir(parents=True, exist_ok=True)
        spec = build_spec(self.cfg, self.layout, key, sc, attempt, services)
        spec.cwd.mkdir(parents=True, exist_ok=True)
        self._launched_ns[key] = time.time_ns()
        job = await self.executor.start(spec)
        self._running[key] = job
        self.record(
            "step_started",
            key,
            attempt=attempt,
            payload={
                "pid": job.handle.pid,
                "handle": job.handle.model_dump(),
                "fingerprint": fp,
                "log": self.layout.relative(spec.files.log),
                "command": shown_command(sc),
                "argv": spec.shown_argv,
                "services": {n: s.url for n, s in services.items()},
            },
        )
        try:
            return await self._watch(key, sc, attempt, job)
        finally:
            self._running.pop(key, None)

    async def _reattach_or_rerun(self, key: str, sc: StepConfig, orphan: tuple[JobHandle, int]) -> StepOutcome | None:
        handle, attempt = orphan
        found = get_executor(handle.executor).reattach(handle, self.layout.attempt_files(key, attempt))
        if found is None:
            self.record(
                "step_failed",
                key,
                attempt=attempt,
                payload={
                    "error": "interrupted: the supervisor stopped and the step's process is gone",
                    "interrupted": True,
                },
            )
            return None
        job, alive = found
        self.record("step_reattached", key, attempt=attempt, payload={"pid": handle.pid, "alive": alive})
        self._running[key] = job
        try:
            return await self._watch(key, sc, attempt, job)
        finally:
            self._running.pop(key, None)

    async def _watch(self, key: str, sc: StepConfig, attempt: int, job: Job) -> StepOutcome:
        st = self.state.steps[key]
        seen_lines = max((p.get("_line", 0) for p in st.progress if p.get("_attempt") == attempt), default=0)
        deadline = None
        if sc.timeout:
            started = datetime.fromisoformat((st.started or _iso(_now())).replace("Z", "+00:00"))
            deadline = time.monotonic() + sc.timeout - (_now() - started).total_seconds()
        watch = JobWatch(self.recorder, key, attempt, job, skip_events_until=seen_lines)
        return await watch.run(
            deadline=deadline,
            timeout_s=sc.timeout,
            stop_requested=lambda: self._cancelled or key in self._cancel_steps,
            function_step=sc.kind != "shell",
        )

    # -- services -------------------------------------------------------------------------------------------
    async def _acquire_services(self, key: str, sc: StepConfig) -> dict[str, ServiceInfo]:
        out: dict[str, ServiceInfo] = {}
        async with self._service_lock:
            for name in sc.services:
                svc = self._services.get(name)
                if svc is not None and not svc.alive():
                    self.record("service_failed", payload={"name": name, "error": "process died; restarting"})
                    await svc.stop()
                    self._services.pop(name, None)
                    svc = None
                if svc is None:
                    conf = self.cfg.services[name]
                    cls = load_object(SERVICE_KINDS[conf.kind])
                    log_path = self.layout.service_log(name)
                    svc = cls(name, conf.params, self.session_dir, self.project_dir, log_path)
                    assert isinstance(svc, Service)
                    try:
                        info = await svc.start(conf.start_timeout)
                    except ServiceError as exc:
                        self.record("service_failed", payload={"name": name, "error": str(exc)})
                        await svc.stop()
                        raise
                    self._services[name] = svc
                    self._service_info[name] = info
                    self.record(
                        "service_started",
                        payload={"name": name, "url": info.url, "model": info.model, "pid": svc.pid()},
                    )
                out[name] = self._service_info[name]
        return out

    async def _release_services(self, key: str) -> None:
        """Stop each service that no unfinished selected step needs any more."""
        async with self._service_lock:
            for name in list(self._services):
                needed = [
                    k
                    for k in self.selected
                    if name in self._step_cfg(k).services and not self._terminal(k) and k != key
                ]
                if not needed:
                    await self._stop_service(name)

    async def _stop_service(self, name: str) -> None:
        svc = self._services.pop(name, None)
        self._service_info.pop(name, None)
        if svc is not None:
            await svc.stop()
            self.record("service_stopped", payload={"name": name})

    async def _stop_all_services(self) -> None:
        for name in list(self._services):
            await self._stop_service(name)

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
