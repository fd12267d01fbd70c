"""Episode fan-out: one ``api`` step run as N shard instances, local or on hosts, merged into one trace and report.

Every shard is its own job (the machinery of ``pipeline.jobs.ranks``: the same placement over ``hosts``, the same
per-shard files, each shard's own exit status checked, the first failure failing the step with that shard's log)
with ``PHASEF_SHARD`` and ``PHASEF_SHARDS`` in its environment and its own artifacts folder ``shard<i>`` in the
step's. A shard runs the episodes whose index is ``i`` modulo N, keeping their ids. Once every shard has ended with
0, the supervisor merges the shards' traces by episode id and judges the merged trace
(``pipeline.bench.shards.merge``) into the step's own artifacts: the same files, with the same content, as one
unsharded run with the same seeds. A failed merge fails the step with its reason. The step's log is shard 0's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from pipeline.fsio import atomic_write_text
from pipeline.jobs.executor import Job, JobHandle, JobSpec
from pipeline.jobs.ranks import RanksExecutor, RanksJob
from pipeline.layout import AttemptFiles

SHARD_FOLDER = "shard"


class ShardsJob(RanksJob):
    def __init__(self, handle: JobHandle, jobs: list[Job], files: list[AttemptFiles]) -> None:
        super().__init__(handle, jobs, files)
        self._merged: dict[str, Any] | None = None

    async def wait(self, timeout: float) -> bool:
        ended = await super().wait(timeout)
        if ended and self._merged is None and self.failed_rank() is None:
            self._merged = await asyncio.to_thread(self._merge)
        return ended

    def _merge(self) -> dict[str, Any]:
        from pipeline.bench.shards import ShardMergeError, merge

        ctx_path = self.files[0].ctx
        try:
            ctx = json.loads(ctx_path.read_text())
            out_dir = Path(ctx["artifacts_dir"]).parent
            shard_dirs = [out_dir / f"{SHARD_FOLDER}{i}" for i in range(len(self.jobs))]
            merged: dict[str, Any] = {"ok": True, "summary": merge(ctx["params"], out_dir, shard_dirs)}
        except (ShardMergeError, OSError, ValueError, KeyError) as exc:
            merged = {"ok": False, "error": f"merging {len(self.jobs)} shards failed: {exc}"}
        atomic_write_text(self.files[0].result, json.dumps(merged, indent=2))
        return merged

    def exit_status(self) -> int | None:
        status = super().exit_status()
        if status == 0 and self._merged is not None and not self._merged["ok"]:
            return 1
        return status

    def result(self) -> dict[str, Any]:
        if self.failed_rank() is None and self._merged is not None:
            return self._merged
        return super().result()


class ShardsExecutor(RanksExecutor):
    name = "shards"
    folder = SHARD_FOLDER

    def count(self, spec: JobSpec) -> int:
        assert self.cfg is not None
        return self.cfg.step(spec.key).shards

    def own_folder(self, rank: int) -> bool:
        return True

    async def prepare(self, spec: JobSpec, placement: list[str | None]) -> tuple[dict[str, Any], list[Path]]:
        return {"shards": len(placement)}, []

    def rank_env(self, spec: JobSpec, rank: int, count: int) -> dict[str, str]:
        return {"PHASEF_SHARD": str(rank), "PHASEF_SHARDS": str(count)}

    def make_job(self, handle: JobHandle, jobs: list[Job], files: list[AttemptFiles]) -> ShardsJob:
        return ShardsJob(handle, jobs, files)
