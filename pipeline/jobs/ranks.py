"""Data-parallel ranks: one step run as N processes joined by MLX's ring backend, on this machine or on hosts.

Each rank is its own job on the local or the remote executor, with ``MLX_RANK`` and ``MLX_HOSTFILE`` (a JSON list
of ``["address:port"]``, one per rank) in its environment; ``mx.distributed.init()`` then joins the ring, and
mlx_lm's trainer averages the gradients and shards the data. Rank 0 uses the attempt's own files (its log is the
step's log, its ``result.json`` the step's result); rank r > 0 has the same files with ``.rank<r>`` in the name.

No launcher's exit code is trusted: every rank's own exit status is read from its status file. The first rank that
fails fails the step with that rank's log, and the others are stopped (TERM, KILL after the grace). After a
supervisor restart every rank is reattached; if one is gone without a status, all are stopped and the attempt runs
again from the newest checkpoint.

The executor's hooks (``count``, ``own_folder``, ``prepare``, ``rank_env``, ``make_job``) are what the episode
fan-out of ``pipeline.jobs.shards`` changes; the rest (placement, per-rank files, checks, reattach) is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal as signals
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.config import PhasefConfig
from pipeline.fsio import atomic_write_text
from pipeline.jobs.executor import ExecutorError, Job, JobHandle, JobSpec, get_executor
from pipeline.layout import AttemptFiles
from pipeline.services import free_ports

STOP_GRACE_S = 5.0
LOG_TAIL_LINES = 20


def rank_files(files: AttemptFiles, rank: int) -> AttemptFiles:
    if rank == 0:
        return files

    def named(path: Path) -> Path:
        for tail in (".ctx.json", ".result.json"):
            if path.name.endswith(tail):  # the step runner finds its result beside its context
                return path.with_name(path.name.removesuffix(tail) + f".rank{rank}{tail}")
        stem, _, ext = path.name.rpartition(".")
        return path.with_name(f"{stem}.rank{rank}.{ext}")

    return AttemptFiles(
        log=named(files.log),
        status=named(files.status),
        ctx=named(files.ctx),
        result=named(files.result),
        command=files.command,
    )


def hostfile_path(files: AttemptFiles) -> Path:
    return files.ctx.with_name(files.ctx.name.replace(".ctx.json", ".hostfile.json"))


class RanksJob:
    def __init__(self, handle: JobHandle, jobs: list[Job], files: list[AttemptFiles]) -> None:
        self.handle = handle
        self.jobs = jobs
        self.files = files
        self._stop_sent: float | None = None
        self._failed: int | None = None

    def read_log(self, offset: int, limit: int) -> bytes:
        return self.jobs[0].read_log(offset, limit)

    async def _ended(self) -> list[bool]:
        return [await job.wait(0) for job in self.jobs]

    async def wait(self, timeout: float) -> bool:
        end = time.monotonic() + max(timeout, 0)
        while True:
            ended = await self._ended()
            for rank, (done, job) in enumerate(zip(ended, self.jobs, strict=True)):
                if done and job.exit_status() != 0 and self._failed is None:
                    self._failed = rank
            if self._failed is not None and not all(ended):
                now = time.monotonic()
                if self._stop_sent is None:
                    self._stop_sent = now
                    self._signal_live(signals.SIGTERM)
                elif now - self._stop_sent > STOP_GRACE_S:
                    self._signal_live(signals.SIGKILL)
            if all(ended) or time.monotonic() >= end:
                return all(ended)
            await asyncio.sleep(min(0.1, max(end - time.monotonic(), 0)))

    def _signal_live(self, sig: int) -> None:
        for job in self.jobs:
            job.signal(sig)

    def signal(self, sig: int) -> None:
        self._signal_live(sig)

    def group_alive(self) -> bool:
        return any(job.group_alive() for job in self.jobs)

    def exit_status(self) -> int | None:
        if self._failed is not None:
            return self.jobs[self._failed].exit_status()
        statuses = [job.exit_status() for job in self.jobs]
        return next((s for s in statuses if s != 0), 0)

    async def close(self) -> None:
        await asyncio.gather(*(job.close() for job in self.jobs))

    def failed_rank(self) -> int | None:
        if self._failed is not None:
            return self._failed
        return next((r for r, job in enumerate(self.jobs) if job.exit_status() != 0), None)

    def result(self) -> dict[str, Any]:
        rank = self.failed_rank()
        if rank is None:
            return self.jobs[0].result()
        own = self.jobs[rank].result()
        tail = ""
        with contextlib.suppress(OSError):
            lines = self.files[rank].log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            tail = "\n".join(lines)
        why = own.get("error") or f"exit status {self.jobs[rank].exit_status()}"
        log = self.files[rank].log
        return {"ok": False, "error": f"rank {rank} of {len(self.jobs)} failed: {why}; its log {log.name}:\n{tail}"}


class RanksExecutor:
    name = "ranks"
    folder = "rank"
    """Rank r > 0 has its own artifacts folder ``<folder><r>`` in the step's."""

    def __init__(self, cfg: PhasefConfig | None) -> None:
        self.cfg = cfg

    def count(self, spec: JobSpec) -> int:
        assert self.cfg is not None
        return self.cfg.step(spec.key).ranks

    def _placement(self, spec: JobSpec) -> list[str | None]:
        assert self.cfg is not None
        sc = self.cfg.step(spec.key)
        hosts: list[str | None] = list(sc.hosts) or [sc.host]
        return [hosts[r % len(hosts)] for r in range(self.count(spec))]

    def own_folder(self, rank: int) -> bool:
        return rank > 0

    async def prepare(self, spec: JobSpec, placement: list[str | None]) -> tuple[dict[str, Any], list[Path]]:
        """Handle fields and files every rank needs: the host file of the ring. Each port is one its host says is
        free (asked over SSH for remote ranks), never a guess that another process there may hold."""
        assert self.cfg is not None
        cfg = self.cfg
        needed = Counter(placement)
        remote = [h for h in needed if h is not None]
        ports: dict[str | None, list[int]] = {}
        if remote:  # (the SSH client is imported only for ranks on hosts)
            from pipeline.jobs.ssh import free_ports as free_ports_on

            answers = await asyncio.gather(*(free_ports_on(cfg.hosts[h], h, needed[h]) for h in remote))
            ports.update(zip(remote, answers, strict=True))
        if None in needed:
            ports[None] = free_ports(needed[None])
        addresses = []
        for host in placement:
            address = "127.0.0.1" if host is None else cfg.hosts[host].address
            addresses.append([f"{address}:{ports[host].pop(0)}"])
        hostfile = hostfile_path(spec.files)
        atomic_write_text(hostfile, json.dumps(addresses))
        return {"hostfile": addresses}, [hostfile]

    def rank_env(self, spec: JobSpec, rank: int, count: int) -> dict[str, str]:
        return {"MLX_RANK": str(rank), "MLX_HOSTFILE": str(hostfile_path(spec.files))}

    def make_job(self, handle: JobHandle, jobs: list[Job], files: list[AttemptFiles]) -> RanksJob:
        return RanksJob(handle, jobs, files)

    async def start(self, spec: JobSpec) -> RanksJob:
        assert self.cfg is not None
        placement = self._placement(spec)
        extra, uploads = await self.prepare(spec, placement)
        base_ctx = json.loads(spec.files.ctx.read_text()) if spec.files.ctx.exists() else None
        jobs: list[Job] = []
        files: list[AttemptFiles] = []
        try:
            for rank, host in enumerate(placement):
                rf = rank_files(spec.files, rank)
                for stale in (rf.status, rf.result):
                    stale.unlink(missing_ok=True)
                env = {**spec.env, **self.rank_env(spec, rank, len(placement))}
                argv = list(spec.argv)
                if self.own_folder(rank) and base_ctx is not None:
                    # its own copy of the context (its result beside it) and its own artifacts folder
                    ctx = {**base_ctx, "artifacts_dir": str(Path(base_ctx["artifacts_dir"]) / f"{self.folder}{rank}")}
                    atomic_write_text(rf.ctx, json.dumps(ctx, indent=2))  # rank 0: the attempt's own, rewritten
                    argv = [rf.ctx.as_posix() if a == str(spec.files.ctx) else a for a in argv]
                rank_spec = replace(spec, argv=argv, env=env, files=rf)
                if host is None:
                    job: Job = await get_executor("local").start(rank_spec)
                else:
                    from pipeline.jobs.remote import RemoteExecutor

                    job = await RemoteExecutor(self.cfg).start(rank_spec, host=host, extra_uploads=uploads)
                jobs.append(job)
                files.append(rf)
        except ExecutorError:
            for job in jobs:
                job.signal(signals.SIGKILL)
            await asyncio.gather(*(job.close() for job in jobs))
            raise
        handle = JobHandle.model_validate(
            {
                "executor": self.name,
                "pid": jobs[0].handle.pid,
                "create_time": jobs[0].handle.create_time,
                "ranks": [job.handle.model_dump() for job in jobs],
                **extra,
            }
        )
        return self.make_job(handle, jobs, files)

    async def reattach(self, handle: JobHandle, files: AttemptFiles) -> tuple[RanksJob, bool] | None:
        stored = [JobHandle.model_validate(h) for h in (handle.model_extra or {}).get("ranks", [])]
        found: list[tuple[Job, bool] | None] = []
        for rank, h in enumerate(stored):
            reattached = get_executor(h.executor, self.cfg).reattach(h, rank_files(files, rank))
            if asyncio.iscoroutine(reattached) or isinstance(reattached, asyncio.Future):
                reattached = await reattached
            found.append(reattached)  # type: ignore[arg-type]
        if not stored or any(f is None for f in found):
            for f in found:  # a rank is gone without a status: the ring is broken, stop the rest and run again
                if f is not None:
                    f[0].signal(signals.SIGKILL)
            await asyncio.gather(*(f[0].close() for f in found if f is not None))
            return None
        pairs = [f for f in found if f is not None]
        job = self.make_job(handle, [j for j, _ in pairs], [rank_files(files, r) for r in range(len(pairs))])
        return job, any(alive for _, alive in pairs)
