"""The asyncio DAG executor: runs a plan's steps as soon as their needs are met, within pool limits.

Every state change goes through ``Engine.record``: it is appended (fsynced) to the journal, applied to the in-memory
``SessionState`` and then broadcast to subscribers, in that order, so nothing a client sees can be lost in a crash.
Each step runs in its own process group behind a tiny ``sh`` wrapper that writes the exit status to a file; the
step's output goes straight to a log file that the engine tails. That is what lets a resumed supervisor reattach to
a step whose process outlived the crash (its status file and log are still there) instead of starting it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

from pipeline.config import PhasefConfig, StepConfig, dump_config
from pipeline.hashing import (
    MISSING,
    canonical_json,
    file_sha256,
    hash_paths,
    mapping_sha256,
    path_sha256,
    text_sha256,
)
from pipeline.jobs.context import EVENT_PREFIX, ServiceInfo, StepContext, resolve_path
from pipeline.journal import Event, Journal, read_journal
from pipeline.registry import SERVICE_KINDS, STEP_KINDS, load_object
from pipeline.report import criteria
from pipeline.services import Service, ServiceError
from pipeline.state import SessionState, StepState, replay

TERM_GRACE_S = 10.0
POLL_S = 0.05
LOG_LINES_PER_POLL = 50
PROGRESS_PER_POLL = 40
SUBSCRIBER_QUEUE = 2000
WRAPPER = 'STATUS="$1"; shift; "$@"; rc=$?; echo "$rc" > "$STATUS.tmp" && mv "$STATUS.tmp" "$STATUS"; exit "$rc"'

Decision = Literal["go", "no-go"]


class ControlError(Exception):
    """A client request the engine refuses; the message is shown to the operator as is."""


@dataclass
class StepOutcome:
    ok: bool
    error: str | None = None
    exit_code: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    timed_out: bool = False


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


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
        self.session_dir = session_dir.resolve()
        self.project_dir = project_dir.resolve()
        self.config_path = config_path
        self.journal = journal or Journal(self.session_dir)
        events = list(read_journal(self.journal.path)) if self.journal.path.exists() else []
        self.state: SessionState = replay(events, self.session_dir.name)
        self.deps = cfg.dependencies()
        self.selected = self._select(until)
        self.pools = {name: asyncio.Semaphore(size) for name, size in cfg.pools.items()}
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._gate_waiters: dict[str, asyncio.Future[None]] = {}
        self._running: dict[str, asyncio.subprocess.Process | int] = {}
        self._cancel_steps: set[str] = set()
        self._cancelled = False
        self._services: dict[str, Service] = {}
        self._service_info: dict[str, ServiceInfo] = {}
        self._service_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.resolved_config = self.session_dir / "config.resolved.toml"
        self._orphans: dict[str, tuple[int, int]] = {}

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

    # -- events -------------------------------------------------------------------------------------------------
    def record(
        self,
        type: str,
        key: str | None = None,
        *,
        attempt: int | None = None,
        payload: dict[str, Any] | None = None,
        sync: bool = True,
    ) -> Event:
        stage, step = key.split(".", 1) if key else (None, None)
        ev = self.journal.append(type, stage=stage, step=step, attempt=attempt, payload=payload, sync=sync)
        self.state.apply(ev)
        self._broadcast({"event": ev.model_dump()})
        return ev

    def _broadcast(self, message: dict[str, Any]) -> None:
        for q in list(self.subscribers):
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
                q.put_nowait({"lagged": True})
            q.put_nowait(message)
        for fn in self.listeners:
            fn(message)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.discard(q)

    # -- run ----------------------------------------------------------------------------------------------------
    async def run(self) -> RunResult:
        import tomli_w

        cfg_text = tomli_w.dumps(dump_config(self.cfg))
        tmp = self.resolved_config.with_suffix(".tmp")
        tmp.write_text(cfg_text, encoding="utf-8")
        os.replace(tmp, self.resolved_config)
        resumed = self.state.last_seq > 0
        orphans = {k: (s.pid, s.attempts) for k, s in self.state.steps.items() if s.state in ("running",) and s.pid}
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
            if pid and _pid_alive(pid):
                _kill_group(pid, signal.SIGTERM)
        self._orphans = {k: (pid or 0, n) for k, (pid, n) in orphans.items() if k in self.selected}
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
    def _step_cfg(self, key: str) -> StepConfig:
        return self.cfg.step(key)

    def _resolve(self, raw: str) -> Path:
        return resolve_path(raw, self.session_dir, self.project_dir)

    def _expand(self, patterns: list[str]) -> list[Path]:
        out: list[Path] = []
        for raw in patterns:
            p = self._resolve(raw)
            if any(ch in str(p) for ch in "*?["):
                root = Path(p.anchor)
                out.extend(sorted(root.glob(str(p.relative_to(root)))))
            else:
                out.append(p)
        return out

    def _artifacts(self, key: str) -> Path:
        stage, step = key.split(".", 1)
        return self.session_dir / "artifacts" / stage / step

    def _env_names(self, sc: StepConfig) -> list[str]:
        return list(dict.fromkeys([*self.cfg.env.allow, *sc.env]))

    def fingerprint(self, key: str) -> tuple[str, list[str]]:
        """DVC-style: hash of kind, command/function, params, env allowlist values and input file hashes."""
        sc = self._step_cfg(key)
        problems: list[str] = []
        inputs = self._expand(sc.inputs)
        input_hashes = hash_paths(inputs, self.session_dir)
        for name, h in input_hashes.items():
            if h == MISSING:
                problems.append(f"input missing: {name}")
        env_values = {n: text_sha256(os.environ.get(n, "")) for n in self._env_names(sc) if n != "PATH"}
        services = {s: canonical_json(self.cfg.services[s].model_dump()) for s in sc.services}
        material = {
            "kind": sc.kind,
            "command": sc.command,
            "function": sc.function,
            "params": sc.params,
            "env": env_values,
            "inputs": input_hashes,
            "outputs": sc.outputs,
            "services": services,
        }
        return text_sha256(canonical_json(material)), problems

    def _outputs(self, key: str) -> dict[str, str]:
        sc = self._step_cfg(key)
        paths = self._expand(sc.outputs)
        if sc.kind not in ("shell", "gate"):
            paths.append(self._artifacts(key))
        return hash_paths(paths, self.session_dir)

    def _cache_hit(self, key: str, fp: str) -> str | None:
        st = self.state.steps.get(key)
        sc = self._step_cfg(key)
        if not sc.cache or st is None or st.state not in ("succeeded", "skipped") or st.fingerprint != fp:
            return None
        if not st.outputs:
            return "unchanged fingerprint (no declared outputs)"
        return "fingerprint and output hashes unchanged" if self._outputs(key) == st.outputs else None

    async def _run_step(self, key: str) -> None:
        sc = self._step_cfg(key)
        if sc.kind == "gate":
            await self._run_gate(key, sc)
            return
        st = self.state.steps.get(key) or StepState(stage=key.split(".")[0], step=key.split(".", 1)[1])
        fp, problems = self.fingerprint(key)
        reason = self._cache_hit(key, fp)
        if reason is not None:
            self.record("step_skipped", key, payload={"reason": reason, "fingerprint": fp, "outputs": st.outputs})
            self._wake.set()
            return
        if problems:
            self.record("step_failed", key, attempt=st.attempts or 1, payload={"error": "; ".join(problems)})
            return
        attempt = st.attempts
        failures = 0
        orphan = self._orphans.pop(key, None)
        while True:
            if orphan is not None:
                attempt = orphan[1]
                outcome = await self._reattach_or_rerun(key, sc, fp, orphan)
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
            outputs = self._outputs(key) if outcome.ok else {}
            missing = [p for p, h in outputs.items() if h == MISSING]
            if missing:
                outcome = StepOutcome(False, error=f"declared output missing: {', '.join(missing)}")
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

    async def _sleep_cancellable(self, key: str, delay: float) -> None:
        end = time.monotonic() + delay
        while time.monotonic() < end and not self._cancelled and key not in self._cancel_steps:
            await asyncio.sleep(min(0.1, end - time.monotonic()))

    def _paths(self, key: str, attempt: int) -> tuple[Path, Path, Path]:
        run = self.session_dir / "run"
        logs = self.session_dir / "logs"
        run.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        return (
            logs / f"{key}.{attempt}.log",
            run / f"{key}.{attempt}.status",
            run / f"{key}.{attempt}.ctx.json",
        )

    def _child_env(self, sc: StepConfig, key: str, services: dict[str, ServiceInfo]) -> dict[str, str]:
        env = {n: os.environ[n] for n in self._env_names(sc) if n in os.environ}
        env.update(
            PHASEF_SESSION_DIR=str(self.session_dir),
            PHASEF_PROJECT_DIR=str(self.project_dir),
            PHASEF_ARTIFACTS=str(self._artifacts(key)),
            PHASEF_STEP=key,
            PYTHONUNBUFFERED="1",
        )
        for name, info in services.items():
            tag = name.upper().replace("-", "_").replace(".", "_")
            if info.url:
                env[f"PHASEF_SERVICE_{tag}_URL"] = info.url
            if info.model:
                env[f"PHASEF_SERVICE_{tag}_MODEL"] = info.model
        return env

    def _argv(
        self, key: str, sc: StepConfig, attempt: int, ctx_path: Path, services: dict[str, ServiceInfo]
    ) -> list[str]:
        if sc.kind == "shell":
            assert sc.command is not None
            command = sc.command.replace("{project}", shlex.quote(str(self.project_dir)))
            command = command.replace("{session}", shlex.quote(str(self.session_dir)))
            return ["/bin/sh", "-c", command]
        function = sc.function if sc.kind == "builtin" else STEP_KINDS[sc.kind].function
        assert function is not None
        params = sc.params
        model_path = STEP_KINDS[sc.kind].params_model
        if model_path:
            params = load_object(model_path).model_validate(sc.params).model_dump(mode="json")
        ctx = StepContext(
            session_id=self.session_dir.name,
            session_dir=self.session_dir,
            project_dir=self.project_dir,
            stage=key.split(".")[0],
            step=key.split(".", 1)[1],
            kind=sc.kind,
            attempt=attempt,
            artifacts_dir=self._artifacts(key),
            params=params,
            inputs=self._expand(sc.inputs),
            outputs=self._expand(sc.outputs),
            services=services,
            config_path=self.resolved_config,
        )
        ctx_path.write_text(ctx.model_dump_json(indent=2), encoding="utf-8")
        return [sys.executable, "-m", "pipeline.jobs.run_function", str(ctx_path), function]

    async def _run_process(
        self, key: str, sc: StepConfig, attempt: int, fp: str, services: dict[str, ServiceInfo]
    ) -> StepOutcome:
        log_path, status_path, ctx_path = self._paths(key, attempt)
        self._artifacts(key).mkdir(parents=True, exist_ok=True)
        for stale in (status_path, ctx_path.with_name(ctx_path.name.replace(".ctx.json", ".result.json"))):
            stale.unlink(missing_ok=True)
        argv = self._argv(key, sc, attempt, ctx_path, services)
        cwd = self._resolve(sc.cwd) if sc.cwd else self.session_dir
        cwd.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_fh:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                WRAPPER,
                "phasef-step",
                str(status_path),
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fh,
                stderr=asyncio.subprocess.STDOUT,
                cwd=cwd,
                env=self._child_env(sc, key, services),
                start_new_session=True,
            )
        self._running[key] = proc
        command = sc.command if sc.kind == "shell" else (sc.function or STEP_KINDS[sc.kind].function)
        self.record(
            "step_started",
            key,
            attempt=attempt,
            payload={
                "pid": proc.pid,
                "fingerprint": fp,
                "log": str(log_path.relative_to(self.session_dir)),
                "command": command,
                "argv": [shlex.quote(a) for a in argv[:3]],
                "services": {n: s.url for n, s in services.items()},
            },
        )
        try:
            return await self._monitor(key, sc, attempt, proc.pid, log_path, status_path, ctx_path, proc)
        finally:
            self._running.pop(key, None)

    async def _reattach_or_rerun(
        self, key: str, sc: StepConfig, fp: str, orphan: tuple[int, int]
    ) -> StepOutcome | None:
        pid, attempt = orphan
        log_path, status_path, ctx_path = self._paths(key, attempt)
        alive = pid > 0 and _pid_alive(pid) and self._is_our_wrapper(pid, status_path)
        if not alive and not status_path.exists():
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
        self.record("step_reattached", key, attempt=attempt, payload={"pid": pid, "alive": alive})
        self._running[key] = pid
        try:
            return await self._monitor(key, sc, attempt, pid, log_path, status_path, ctx_path, None)
        finally:
            self._running.pop(key, None)

    @staticmethod
    def _is_our_wrapper(pid: int, status_path: Path) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True  # no /proc (macOS): trust the recorded pid
        return str(status_path).encode() in cmdline

    async def _monitor(
        self,
        key: str,
        sc: StepConfig,
        attempt: int,
        pid: int,
        log_path: Path,
        status_path: Path,
        ctx_path: Path,
        proc: asyncio.subprocess.Process | None,
    ) -> StepOutcome:
        st = self.state.steps[key]
        seen_lines = max((p.get("_line", 0) for p in st.progress if p.get("_attempt") == attempt), default=0)
        tail = _LogTail(log_path, skip_events_until=seen_lines)
        deadline = None
        if sc.timeout:
            started = datetime.fromisoformat((st.started or _iso(_now())).replace("Z", "+00:00"))
            deadline = time.monotonic() + sc.timeout - (_now() - started).total_seconds()
        timed_out = cancelled = False
        term_sent_at: float | None = None
        exit_code: int | None = None
        while True:
            self._drain_log(key, attempt, tail)
            if proc is not None:
                if proc.returncode is not None:
                    exit_code = proc.returncode
                    break
            elif not _pid_alive(pid) or _zombie(pid):
                break
            now = time.monotonic()
            want_stop = (deadline is not None and now >= deadline) or self._cancelled or key in self._cancel_steps
            if want_stop and term_sent_at is None:
                timed_out = (
                    deadline is not None and now >= deadline and not (self._cancelled or key in self._cancel_steps)
                )
                cancelled = not timed_out
                _kill_group(pid, signal.SIGTERM)
                term_sent_at = now
            elif term_sent_at is not None and now - term_sent_at > TERM_GRACE_S:
                _kill_group(pid, signal.SIGKILL)
            if proc is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), POLL_S * 4)
            else:
                await asyncio.sleep(POLL_S * 4)
        if term_sent_at is not None:
            # the wrapper is gone but the step may still be saving its state: give the group the grace time
            while _group_alive(pid) and time.monotonic() - term_sent_at < TERM_GRACE_S:
                self._drain_log(key, attempt, tail)
                await asyncio.sleep(POLL_S)
            _kill_group(pid, signal.SIGKILL)  # leave no grandchildren behind
        self._drain_log(key, attempt, tail, final=True)
        if exit_code is None:
            try:
                exit_code = int(status_path.read_text().strip())
            except (OSError, ValueError):
                exit_code = None
        if timed_out:
            return StepOutcome(False, error=f"timed out after {sc.timeout:g} s", exit_code=exit_code, timed_out=True)
        if cancelled:
            return StepOutcome(False, error="cancelled", exit_code=exit_code, cancelled=True)
        result_path = ctx_path.with_name(ctx_path.name.replace(".ctx.json", ".result.json"))
        result: dict[str, Any] = {}
        if sc.kind != "shell" and result_path.exists():
            with contextlib.suppress(OSError, ValueError):
                result = orjson.loads(result_path.read_bytes())
        if exit_code == 0:
            return StepOutcome(True, exit_code=0, summary=result.get("summary", {}))
        error = result.get("error") or f"exit status {exit_code}" + tail.last_lines_hint()
        if exit_code is None:
            error = "the step's process ended without an exit status" + tail.last_lines_hint()
        return StepOutcome(False, error=error, exit_code=exit_code)

    def _drain_log(self, key: str, attempt: int, tail: _LogTail, final: bool = False) -> None:
        """Journal the structured progress lines a step printed since the last poll, with one fsync per batch.

        Batching is safe here: progress events inform, they decide nothing. Each carries the log line it came from
        (``_line``), and the log file itself is the durable copy, so after a crash a reattached monitor re-reads the
        log and journals exactly the events past the last one on disk (none lost, none twice).
        """
        lines, events = tail.poll(final)
        if events:
            if len(events) > PROGRESS_PER_POLL:  # coalesce a flood: keep an even sample and the newest
                step = len(events) / PROGRESS_PER_POLL
                events = [events[int(i * step)] for i in range(PROGRESS_PER_POLL - 1)] + [events[-1]]
            for number, payload in events:
                payload["_attempt"] = attempt
                payload["_line"] = number
                self.record("step_progress", key, attempt=attempt, payload=payload, sync=False)
            self.journal.sync()
        if lines and self.subscribers:
            shown = lines[-LOG_LINES_PER_POLL:]
            if len(lines) > len(shown):
                shown.insert(0, f"... {len(lines) - len(shown)} more lines in the log")
            self._broadcast({"log": {"key": key, "attempt": attempt, "lines": shown}})

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
                    log_path = self.session_dir / "logs" / f"service.{name}.log"
                    log_path.parent.mkdir(parents=True, exist_ok=True)
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

    # -- gates ----------------------------------------------------------------------------------------------
    def gate_evidence(self, key: str) -> tuple[dict[str, str], dict[str, Any] | None]:
        """Hashes of the evidence a gate names, plus the bound audit outcome (its packet hash re-computed)."""
        sc = self._step_cfg(key)
        evidence = hash_paths(self._expand(sc.evidence), self.session_dir)
        audit: dict[str, Any] | None = None
        if sc.audit:
            verdict_path = self._artifacts(sc.audit) / "verdict.json"
            if not verdict_path.exists():
                audit = {"verdict": "BLOCKED", "reasons": [f"no audit verdict at {verdict_path}"]}
                evidence["audit:verdict.json"] = MISSING
            else:
                try:
                    data = orjson.loads(verdict_path.read_bytes())
                except (OSError, orjson.JSONDecodeError) as exc:
                    data = {"verdict": "INVALID", "reasons": [f"unreadable verdict.json: {exc}"]}
                audit = {
                    "verdict": data.get("verdict", "INVALID"),
                    "reasons": data.get("reasons", []),
                    "packet_sha256": data.get("packet_sha256"),
                    "verdict_path": str(verdict_path.relative_to(self.session_dir)),
                    "auditors": [
                        {k: a.get(k) for k in ("name", "role", "verdict", "findings", "blockers", "error")}
                        for a in data.get("auditors", [])
                        if isinstance(a, dict)
                    ],
                }
                evidence["audit:verdict.json"] = file_sha256(verdict_path)
                packet_path = data.get("packet_path")
                if packet_path:
                    evidence["audit:packet"] = self._packet_sha(Path(packet_path))
        return evidence, audit

    def _packet_sha(self, path: Path) -> str:
        full = path if path.is_absolute() else self.session_dir / path
        try:
            fn = load_object("pipeline.audit.packet:packet_sha256")
            return str(fn(full))
        except (ImportError, ValueError):
            return path_sha256(full)
        except OSError:
            return MISSING

    async def _run_gate(self, key: str, sc: StepConfig) -> None:
        gate = self.state.gates.get(key)
        evidence, audit = self.gate_evidence(key)
        reopened = None
        if gate is not None and gate.state in ("decided", "timed_out"):
            if mapping_sha256(evidence) == gate.evidence_sha256:
                return  # decided on this very evidence before a restart: recorded once, never asked again
            reopened = f"the evidence changed since the {gate.state} decision ({gate.decision} by {gate.operator})"
        if gate is None or gate.state != "waiting" or self.state.steps[key].state != "waiting":
            deadline = _iso(_now() + timedelta(seconds=sc.timeout)) if sc.timeout else None
            self.record(
                "gate_opened",
                key,
                attempt=1,
                payload={
                    "prompt": sc.prompt or sc.title or f"decision needed at {key}",
                    "evidence": evidence,
                    "evidence_sha256": mapping_sha256(evidence),
                    "audit": audit,
                    "criteria": criteria.judge_final(self.cfg, key, audit, self._expand(sc.evidence), self.session_dir)
                    if key == self.cfg.final_gate_key()
                    else None,
                    "deadline": deadline,
                    "reopened": reopened,
                },
            )
        gate = self.state.gates[key]
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gate_waiters[key] = fut
        timeout = None
        if gate.deadline:
            end = datetime.fromisoformat(gate.deadline.replace("Z", "+00:00"))
            timeout = max(0.0, (end - _now()).total_seconds())
        try:
            while not fut.done():
                if self._cancelled or key in self._cancel_steps:
                    self.record("step_cancelled", key, payload={"reason": "cancelled while waiting"})
                    return
                try:
                    await asyncio.wait_for(asyncio.shield(fut), 0.2 if timeout is None else min(0.2, timeout))
                except TimeoutError:
                    if timeout is not None:
                        timeout -= 0.2
                        if timeout <= 0 and not fut.done():
                            self.record("gate_timed_out", key, payload={"deadline": gate.deadline})
                            return
        finally:
            self._gate_waiters.pop(key, None)

    def decide(
        self,
        gate_id: str,
        decision: Decision,
        operator: str,
        reason: str,
        *,
        evidence_sha256: str | None = None,
        key_fingerprint: str | None = None,
        role: str | None = None,
        via: str = "control",
        override: bool = False,
    ) -> dict[str, Any]:
        """Record an operator's decision on a waiting gate, or refuse it with a ``ControlError``."""
        gate = self.state.gates.get(gate_id)
        if gate is None:
            raise ControlError(f"no gate {gate_id!r}; gates: {', '.join(self.state.gates) or 'none opened yet'}")
        if gate.state != "waiting":
            by = f" by {gate.operator}" if gate.operator else ""
            raise ControlError(f"gate {gate_id} is not waiting: {gate.state}{by} ({gate.decision})")
        if decision not in ("go", "no-go"):
            raise ControlError("decision must be 'go' or 'no-go'")
        if not operator.strip():
            raise ControlError("an operator name is required")
        if not reason.strip():
            raise ControlError("a reason is required")
        if role is not None and role != "approver":
            raise ControlError(f"operator {operator} has role {role!r}; only approvers can sign gates")
        current, _audit = self.gate_evidence(gate_id)
        current_sha = mapping_sha256(current)
        refusal = None
        if current_sha != gate.evidence_sha256:
            changed = sorted(k for k in set(current) | set(gate.evidence) if current.get(k) != gate.evidence.get(k))
            refusal = f"evidence changed since the gate opened: {', '.join(changed)}"
        elif evidence_sha256 is not None and evidence_sha256 != gate.evidence_sha256:
            refusal = "the decision names different evidence than the gate holds (stale view?)"
        refusal = refusal or criteria.final_go_refusal(self.cfg, gate, decision, override)
        if refusal:
            self.record(
                "gate_refused",
                gate_id,
                payload={"operator": operator, "decision": decision, "reason": refusal, "via": via},
            )
            raise ControlError(refusal)
        audit_verdict = (gate.audit or {}).get("verdict")
        override = criteria.is_override(self.cfg, gate, decision)
        self.record(
            "gate_decided",
            gate_id,
            payload={
                "decision": decision,
                "operator": operator,
                "reason": reason,
                "evidence_sha256": gate.evidence_sha256,
                "audit_verdict": audit_verdict,
                "override": override,
                "unmet_criteria": [c["criterion"] for c in criteria.unmet(gate)] if gate.criteria is not None else [],
                "key_fingerprint": key_fingerprint,
                "via": via,
            },
        )
        fut = self._gate_waiters.get(gate_id)
        if fut is not None and not fut.done():
            fut.set_result(None)
        final = gate_id == self.cfg.final_gate_key()
        return {"gate": gate_id, "decision": decision, "operator": operator, "override": override, "final": final}

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


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


class _LogTail:
    """Reads a step's log as it grows; splits structured event lines from plain lines."""

    def __init__(self, path: Path, skip_events_until: int = 0) -> None:
        self.path = path
        self.offset = 0
        self.line = 0
        self.partial = b""
        self.skip_until = skip_events_until
        self.recent: list[str] = []

    def poll(self, final: bool = False) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(8 << 20)
        except FileNotFoundError:
            return [], []
        self.offset += len(data)
        data = self.partial + data
        parts = data.split(b"\n")
        self.partial = b"" if final else parts.pop()
        lines: list[str] = []
        events: list[tuple[int, dict[str, Any]]] = []
        prefix = EVENT_PREFIX.encode()
        for raw in parts:
            if not raw and final:
                continue
            self.line += 1
            if raw.startswith(prefix):
                if self.line <= self.skip_until:
                    continue
                try:
                    obj = orjson.loads(raw[len(prefix) :])
                except orjson.JSONDecodeError:
                    lines.append(raw.decode("utf-8", "replace"))
                    continue
                if isinstance(obj, dict):
                    events.append((self.line, obj))
                continue
            text = raw.decode("utf-8", "replace")
            lines.append(text)
        self.recent = (self.recent + lines)[-5:]
        return lines, events

    def last_lines_hint(self) -> str:
        return (": " + " | ".join(line[:200] for line in self.recent[-3:])) if self.recent else ""
