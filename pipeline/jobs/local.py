"""The local process executor: each attempt runs in its own process group behind a tiny ``sh`` wrapper.

The wrapper writes the command's exit status to a status file (atomically, by rename) and the output goes straight
to a log file. Both outlive the supervisor, which is what lets a resumed supervisor reattach to a step whose process
outlived a crash instead of starting it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from pipeline.jobs.executor import JobHandle, JobSpec, read_log, read_result
from pipeline.layout import AttemptFiles

WRAPPER = 'STATUS="$1"; shift; "$@"; rc=$?; echo "$rc" > "$STATUS.tmp" && mv "$STATUS.tmp" "$STATUS"; exit "$rc"'


def _exists(send: Callable[[int, int], None], ident: int) -> bool:
    try:
        send(ident, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # there is one, owned by someone else
    return True


def pid_alive(pid: int) -> bool:
    return _exists(os.kill, pid)


def group_alive(pgid: int) -> bool:
    return _exists(os.killpg, pgid)


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


CREATE_TIME_SLACK_S = 0.05
"""Two readings of one process's start time agree to the kernel's clock tick (10 ms on Linux)."""


def create_time(pid: int) -> float | None:
    """When the process started (seconds since the epoch), or None when there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_same_process(pid: int, recorded: float | None) -> bool:
    """Whether ``pid`` is alive and, when its start time was recorded, still the process that started then."""
    started = create_time(pid)
    if started is None:
        return False
    return recorded is None or abs(started - recorded) <= CREATE_TIME_SLACK_S


def is_our_wrapper(handle: JobHandle, status_path: Path) -> bool:
    """Whether the process with the handle's pid is still the wrapper the handle was made for, on any platform.

    A pid is reused once its process is gone: the process must also have the recorded start time and carry the
    attempt's status file on its command line. A handle from before start times were journaled is judged by its
    command line alone; a process whose command line cannot be read is judged by its start time alone.
    """
    try:
        proc = psutil.Process(handle.pid)
        started = proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    recorded = handle.create_time
    if recorded is not None and abs(started - recorded) > CREATE_TIME_SLACK_S:
        return False
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return recorded is not None
    return str(status_path) in cmdline


class LocalJob:
    def __init__(
        self, handle: JobHandle, files: AttemptFiles, proc: asyncio.subprocess.Process | None, gone: bool = False
    ) -> None:
        self.handle = handle
        self.files = files
        self.proc = proc
        self.gone = gone
        """Reattached to a job whose process had already ended: the pid may belong to someone else now."""

    @property
    def pid(self) -> int:
        return self.handle.pid

    def read_log(self, offset: int, limit: int) -> bytes:
        return read_log(self.files, offset, limit)

    def _ended(self) -> bool:
        if self.gone:
            return True
        if self.proc is not None:
            return self.proc.returncode is not None
        return not is_our_wrapper(self.handle, self.files.status)  # gone, a zombie, or its pid reused

    async def wait(self, timeout: float) -> bool:
        if self._ended() or timeout <= 0:
            return self._ended()
        if self.proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.proc.wait()), timeout)
        else:
            await asyncio.sleep(timeout)
        return self._ended()

    def signal(self, sig: int) -> None:
        if not self.gone:
            kill_group(self.pid, sig)

    def group_alive(self) -> bool:
        return not self.gone and group_alive(self.pid)

    def exit_status(self) -> int | None:
        if self.proc is not None and self.proc.returncode is not None:
            return self.proc.returncode
        try:
            return int(self.files.status.read_text().strip())
        except (OSError, ValueError):
            return None

    def result(self) -> dict[str, Any]:
        return read_result(self.files)

    async def close(self) -> None:
        return None  # signals are sent at once; nothing else is held


class LocalExecutor:
    name = "local"

    async def start(self, spec: JobSpec) -> LocalJob:
        for stale in (spec.files.status, spec.files.result):
            stale.unlink(missing_ok=True)
        with open(spec.files.log, "ab") as log_fh:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                WRAPPER,
                "phasef-step",
                str(spec.files.status),
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fh,
                stderr=asyncio.subprocess.STDOUT,
                cwd=spec.cwd,
                env=spec.env,
                start_new_session=True,
            )
        handle = JobHandle(executor=self.name, pid=proc.pid, create_time=create_time(proc.pid))
        return LocalJob(handle, spec.files, proc)

    def reattach(self, handle: JobHandle, files: AttemptFiles) -> tuple[LocalJob, bool] | None:
        pid = handle.pid
        alive = pid > 0 and is_our_wrapper(handle, files.status)
        if not alive and not files.status.exists():
            return None
        return LocalJob(handle, files, None, gone=not alive), alive
