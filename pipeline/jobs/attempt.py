"""One attempt of one step, from start (or reattach after a restart) to its outcome, on an executor.

The engine decides that an attempt runs; this module starts it on the executor, journals ``step_started`` with the
job's handle (or ``step_reattached``), and watches it to its outcome within the step's timeout.
"""

from __future__ import annotations

import inspect
import time

from pipeline.clock import now, parse_iso
from pipeline.config import StepConfig
from pipeline.jobs.context import ServiceInfo
from pipeline.jobs.executor import Executor, ExecutorError, Job, JobHandle, get_executor
from pipeline.jobs.spec import build_spec, shown_command
from pipeline.jobs.watch import JobWatch, StepOutcome
from pipeline.parts import SessionParts


class Attempts:
    def __init__(self, parts: SessionParts, executor: Executor) -> None:
        self.cfg = parts.cfg
        self.layout = parts.layout
        self.recorder = parts.recorder
        self.record = parts.recorder.record
        self.state = parts.recorder.state
        self.executor = executor
        self.stop_requested = parts.stop_requested
        self.running: dict[str, Job] = {}
        self._launched_ns: dict[str, int] = {}

    def started_ns(self, key: str) -> int:
        """When the current attempt started, less the slack of the coarse clock that stamps files. After a restart
        only the journal knows: the event is written just after the process starts, so a second of slack then."""
        if key in self._launched_ns:
            return self._launched_ns[key] - 50_000_000
        started = self.state.steps[key].started
        if started is None:
            return 0
        return int(parse_iso(started).timestamp() * 1e9) - 1_000_000_000

    async def start(
        self, key: str, sc: StepConfig, attempt: int, fp: str, services: dict[str, ServiceInfo]
    ) -> StepOutcome:
        self.layout.artifacts(key).mkdir(parents=True, exist_ok=True)
        spec = build_spec(self.cfg, self.layout, key, sc, attempt, services)
        spec.cwd.mkdir(parents=True, exist_ok=True)
        self._launched_ns[key] = time.time_ns()
        if sc.shards > 1:
            executor = get_executor("shards", self.cfg)
        elif sc.ranks > 1 or sc.hosts:
            executor = get_executor("ranks", self.cfg)
        else:
            executor = get_executor("remote", self.cfg) if sc.host else self.executor
        try:
            job = await executor.start(spec)
        except ExecutorError as exc:
            return StepOutcome(False, error=str(exc))
        self.running[key] = job
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
            self.running.pop(key, None)

    async def reattach(self, key: str, sc: StepConfig, orphan: tuple[JobHandle, int]) -> StepOutcome | None:
        handle, attempt = orphan
        reattached = get_executor(handle.executor, self.cfg).reattach(handle, self.layout.attempt_files(key, attempt))
        found = await reattached if inspect.isawaitable(reattached) else reattached
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
        self.running[key] = job
        try:
            return await self._watch(key, sc, attempt, job)
        finally:
            self.running.pop(key, None)

    async def _watch(self, key: str, sc: StepConfig, attempt: int, job: Job) -> StepOutcome:
        st = self.state.steps[key]
        seen_lines = max((p.get("_line", 0) for p in st.progress if p.get("_attempt") == attempt), default=0)
        deadline = None
        if sc.timeout:
            started = parse_iso(st.started) if st.started else now()
            deadline = time.monotonic() + sc.timeout - (now() - started).total_seconds()
        watch = JobWatch(self.recorder, key, attempt, job, skip_events_until=seen_lines)
        try:
            return await watch.run(
                deadline=deadline,
                timeout_s=sc.timeout,
                stop_requested=lambda: self.stop_requested(key),
                function_step=sc.kind != "shell",
            )
        finally:
            await job.close()
