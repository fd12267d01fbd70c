"""A resumed supervisor takes a recorded process for its step only if it is the same process: pid, start time and
command line (psutil, on every platform), never an unrelated process that reused the pid."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from pipeline.config import parse_config
from pipeline.engine import Engine
from pipeline.jobs.executor import JobHandle, JobSpec
from pipeline.jobs.local import WRAPPER, LocalExecutor, is_our_wrapper
from pipeline.journal import Journal
from pipeline.layout import SessionLayout
from tests.cross_helpers import run_session

PLAN = '[stages.A]\ntitle = "A"\n[stages.A.steps.work]\nkind = "shell"\ncommand = "echo done > work.txt"\n'


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_the_handle_finds_its_own_job_and_no_other(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path, tmp_path)
    files = layout.attempt_files("A.work", 1)
    spec = JobSpec("A.work", 1, ["/bin/sh", "-c", "sleep 30"], tmp_path, dict(os.environ), files)
    executor = LocalExecutor()

    async def start() -> JobHandle:
        job = await executor.start(spec)
        return job.handle

    handle = asyncio.run(start())
    try:
        assert handle.create_time == psutil.Process(handle.pid).create_time()
        stored = JobHandle.model_validate(json.loads(handle.model_dump_json()))  # as the journal keeps it
        found = executor.reattach(stored, files)
        assert found is not None and found[1] is True
        older = stored.model_copy(update={"create_time": (stored.create_time or 0) - 5})
        assert not is_our_wrapper(older, files.status)
        assert executor.reattach(older, files) is None  # not ours, and no status file: interrupted
        other_attempt = layout.attempt_files("A.work", 2)
        assert not is_our_wrapper(stored, other_attempt.status)
    finally:
        os.killpg(handle.pid, signal.SIGKILL)


def test_a_reused_pid_is_neither_reattached_nor_killed(tmp_path: Path) -> None:
    session = tmp_path / "s"
    status = SessionLayout(session, tmp_path).attempt_files("A.work", 1).status
    # another process now holds the pid the journal recorded, even with a command line like the wrapper's
    impostor = subprocess.Popen(["/bin/sh", "-c", "sleep 60", "phasef-step", str(status)], start_new_session=True)
    try:
        started = psutil.Process(impostor.pid).create_time()
        with Journal(session) as j:
            j.append("session_started", payload={"pid": 1, "plan": [{"stage": "A", "step": "work", "kind": "shell"}]})
            handle = {"executor": "local", "pid": impostor.pid, "create_time": started - 3.0}
            j.append("step_started", stage="A", step="work", attempt=1, payload={"pid": impostor.pid, "handle": handle})
        engine = Engine(parse_config(PLAN), session_dir=session, project_dir=tmp_path)
        t0 = time.monotonic()
        try:
            result = asyncio.run(engine.run())
        finally:
            engine.journal.close()
        assert result.exit_code == 0, result
        assert time.monotonic() - t0 < 30  # it did not wait for the impostor
        events = [json.loads(line) for line in (session / "journal.jsonl").read_text().splitlines()]
        kinds = [e["type"] for e in events if e["step"] == "work"]
        assert kinds == ["step_started", "step_failed", "step_started", "step_succeeded"]
        assert events[[e["type"] for e in events].index("step_failed")]["payload"]["interrupted"] is True
        assert "step_reattached" not in kinds
        assert impostor.poll() is None  # still running: nobody signalled it
        assert (session / "work.txt").read_text() == "done\n"
    finally:
        _stop(impostor)


def test_a_journaled_handle_of_a_live_step_is_reattached(tmp_path: Path) -> None:
    """The same process (pid, start time, command line) is taken back and watched to its end."""
    session = tmp_path / "s"
    status = SessionLayout(session, tmp_path).attempt_files("A.work", 1).status
    log = session / "logs" / "A.work.1.log"
    log.parent.mkdir(parents=True, exist_ok=True)

    with open(log, "ab") as fh:
        wrapper = subprocess.Popen(
            ["/bin/sh", "-c", WRAPPER, "phasef-step", str(status), "/bin/sh", "-c", "sleep 1; echo late"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        handle = {"executor": "local", "pid": wrapper.pid, "create_time": psutil.Process(wrapper.pid).create_time()}
        with Journal(session) as j:
            j.append("session_started", payload={"pid": 1, "plan": [{"stage": "A", "step": "work", "kind": "shell"}]})
            j.append("step_started", stage="A", step="work", attempt=1, payload={"pid": wrapper.pid, "handle": handle})
        run_session(tmp_path, session.name, PLAN)
        events = [json.loads(line) for line in (session / "journal.jsonl").read_text().splitlines()]
        reattached = [e for e in events if e["type"] == "step_reattached"]
        assert [e["payload"] for e in reattached] == [{"pid": wrapper.pid, "alive": True}]
        assert [e["type"] for e in events if e["step"] == "work"][-1] == "step_succeeded"
        assert status.read_text().strip() == "0" and "late" in log.read_text()
    finally:
        _stop(wrapper)


def _resume_with_service(session: Path, tmp_path: Path, pid: int, created: float) -> None:
    with Journal(session) as j:
        j.append("session_started", payload={"pid": 1, "plan": [{"stage": "A", "step": "work", "kind": "shell"}]})
        j.append("service_started", payload={"name": "llm", "url": None, "pid": pid, "create_time": created})
    engine = Engine(parse_config(PLAN), session_dir=session, project_dir=tmp_path)
    try:
        assert asyncio.run(engine.run()).exit_code == 0
    finally:
        engine.journal.close()


def _wait_gone(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_a_resumed_supervisor_stops_the_service_a_killed_one_left(tmp_path: Path) -> None:
    """The journal says a service was running when the supervisor died: the same process is stopped on resume."""
    server = subprocess.Popen(["/bin/sh", "-c", "sleep 60"], start_new_session=True)
    try:
        _resume_with_service(tmp_path / "s", tmp_path, server.pid, psutil.Process(server.pid).create_time())
        assert _wait_gone(server, 10), "the left-over service is still running"
    finally:
        _stop(server)


def test_a_reused_service_pid_is_not_killed_on_resume(tmp_path: Path) -> None:
    """Another process holds the pid the journal recorded for a service: its start time differs, it is left alone."""
    other = subprocess.Popen(["/bin/sh", "-c", "sleep 60"], start_new_session=True)
    try:
        _resume_with_service(tmp_path / "s", tmp_path, other.pid, psutil.Process(other.pid).create_time() - 3.0)
        assert not _wait_gone(other, 1.0), "an unrelated process that reused the pid was killed"
    finally:
        _stop(other)
