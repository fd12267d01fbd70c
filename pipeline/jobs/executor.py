"""The executor protocol: how a step's process is started, found again, watched, signalled and collected.

The engine decides *when* a step runs (needs, pools, retries, cancel, timeouts); an executor decides *where and how*.
``start`` returns a :class:`Job` whose :class:`JobHandle` is journaled with ``step_started``; after a supervisor
restart ``reattach`` turns that stored handle back into a job (or says the process is gone). A job streams its log
from an offset, signals its whole process group, and reports the exit status and the step function's result.

Adding a way to run steps (a remote host, several ranks) is one new module implementing :class:`Executor` plus one
line in :data:`EXECUTORS`; nothing in the engine changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ConfigDict

from pipeline.layout import AttemptFiles


class ExecutorError(Exception):
    """The executor could not start the job (a host unreachable, a key refused): the attempt fails with this reason
    and is retried like any failed attempt."""


class JobHandle(BaseModel):
    """What the journal stores about a started job, enough for its executor to find it again."""

    model_config = ConfigDict(extra="allow")
    executor: str = "local"
    pid: int = 0
    create_time: float | None = None
    """When the process started (seconds since the epoch), so that a process that reused the pid is not taken for
    it; None in handles journaled before start times were."""


@dataclass
class JobSpec:
    """What to run for one attempt of one step."""

    key: str
    attempt: int
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    files: AttemptFiles
    shown_argv: list[str] = field(default_factory=list)
    """The first words of the command line as journaled (the full text may be long)."""


def read_log(files: AttemptFiles, offset: int, limit: int) -> bytes:
    """Up to ``limit`` bytes of the attempt's log from ``offset`` (none before the log exists)."""
    try:
        with open(files.log, "rb") as fh:
            fh.seek(offset)
            return fh.read(limit)
    except FileNotFoundError:
        return b""


def read_result(files: AttemptFiles) -> dict[str, Any]:
    """The step function's result (its summary) from the attempt's result file: {} when there is none or it is not
    a JSON object (a shell step writes none)."""
    if not files.result.exists():
        return {}
    with contextlib.suppress(OSError, ValueError):
        data = orjson.loads(files.result.read_bytes())
        if isinstance(data, dict):
            return data
    return {}


class Job(Protocol):
    handle: JobHandle

    def read_log(self, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of the job's output from ``offset`` (empty when there is nothing new)."""
        ...

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True once the job's main process has ended."""
        ...

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the job's whole process group (nothing when it is gone)."""
        ...

    def group_alive(self) -> bool:
        """Whether any process of the job's group is still alive (a step may still be saving after TERM)."""
        ...

    def exit_status(self) -> int | None:
        """The exit status once the job has ended (None: it ended without leaving one)."""
        ...

    def result(self) -> dict[str, Any]:
        """What a step function returned (its ``result.json``); empty for a shell command."""
        ...

    async def close(self) -> None:
        """Release what watching the job holds (a connection, a poller), once the engine is done with it. The
        process is left as it is; a signal already sent is given a bounded time to arrive. Never hangs."""
        ...


class Executor(Protocol):
    name: str

    async def start(self, spec: JobSpec) -> Job: ...

    def reattach(
        self, handle: JobHandle, files: AttemptFiles
    ) -> tuple[Job, bool] | Awaitable[tuple[Job, bool] | None] | None:
        """The job behind a stored handle and whether its process is still alive; None when it is gone and left
        no exit status (the attempt was interrupted). An executor that must ask over the network returns an
        awaitable."""
        ...


def _local(cfg: Any = None) -> Executor:
    from pipeline.jobs.local import LocalExecutor

    return LocalExecutor()


def _remote(cfg: Any = None) -> Executor:
    from pipeline.jobs.remote import RemoteExecutor

    return RemoteExecutor(cfg)


def _ranks(cfg: Any = None) -> Executor:
    from pipeline.jobs.ranks import RanksExecutor

    return RanksExecutor(cfg)


def _shards(cfg: Any = None) -> Executor:
    from pipeline.jobs.shards import ShardsExecutor

    return ShardsExecutor(cfg)


EXECUTORS: dict[str, Any] = {"local": _local, "remote": _remote, "ranks": _ranks, "shards": _shards}
"""Executor name -> factory (given the plan's config). A new executor is one module and one line here."""


def get_executor(name: str, cfg: Any = None) -> Executor:
    try:
        factory = EXECUTORS[name]
    except KeyError:
        raise ValueError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}") from None
    executor: Executor = factory(cfg)
    return executor
