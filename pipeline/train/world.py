"""A training job's place among data-parallel ranks, and what the ranks must agree on.

The ranks executor (``pipeline.jobs.ranks``) starts one training process per rank with ``MLX_RANK`` and
``MLX_HOSTFILE`` set; ``join`` then joins MLX's ring backend, and mlx_lm's trainer shards the batches and averages
the gradients over the same group. Without those variables the job is one rank of one and nothing here talks to
the network.

Only rank 0 writes to the adapter folder (checkpoints, ``adapters.safetensors``, ``adapter_config.json``) and
only its log is the step's log (the live loss of the UI). The other ranks may run on other hosts, whose workdir
holds no checkpoint: so on resume rank 0 sends the newest checkpoint's files over the ring (``share_checkpoint``),
and every rank restores from the same bytes. A stop (signal or the job's own time budget) is decided together
(``RankedStop``), so that every rank ends the loop at the same step instead of one waiting forever in an all-reduce.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.train.checkpoints import Checkpoint, checkpoint_name, optimizer_name, write_atomically
from pipeline.train.stop import StopControl

STOP_CODES = ("signal", "timeout")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def leader(self) -> bool:
        return self.rank == 0


def join() -> World:
    """Join the ring when started as a rank (``MLX_RANK`` and ``MLX_HOSTFILE`` set), else a world of one."""
    if "MLX_RANK" not in os.environ or "MLX_HOSTFILE" not in os.environ:
        return World()
    import mlx.core as mx

    group = mx.distributed.init(backend="ring", strict=True)
    return World(group.rank(), group.size())


def _all_sum_ints(values: list[int]) -> list[int]:
    import mlx.core as mx

    total = mx.distributed.all_sum(mx.array(values, dtype=mx.int64), stream=mx.cpu)
    import numpy as np

    return [int(v) for v in np.array(total)]


def broadcast_bytes(world: World, data: bytes | None) -> bytes:
    """Rank 0's ``data`` on every rank (the others pass None): an all-sum where every other rank adds zeros."""
    import mlx.core as mx
    import numpy as np

    if world.size == 1:
        return data or b""
    (length,) = _all_sum_ints([len(data or b"") if world.leader else 0])
    if length == 0:
        return b""
    if world.leader:
        assert data is not None
        buf = mx.array(np.frombuffer(data, dtype=np.uint8))
    else:
        buf = mx.zeros((length,), dtype=mx.uint8)
    total = mx.distributed.all_sum(buf, stream=mx.cpu)
    mx.eval(total)
    return bytes(np.array(total, copy=False))


def share_checkpoint(world: World, ckpt: Checkpoint | None, landing: Path) -> Checkpoint | None:
    """Every rank gets rank 0's checkpoint (or None): the others receive its files over the ring into ``landing``
    (their own folder, never the adapter folder) and restore from there."""
    if world.size == 1:
        return ckpt
    step, has_optimizer = _all_sum_ints(
        [ckpt.step + 1 if (world.leader and ckpt) else 0, int(bool(world.leader and ckpt and ckpt.optimizer))]
    )
    if step == 0:
        return None
    step -= 1
    own = ckpt if world.leader else None
    adapters = broadcast_bytes(world, own.adapters.read_bytes() if own else None)
    optimizer = b""
    if has_optimizer:
        optimizer = broadcast_bytes(world, own.optimizer.read_bytes() if own and own.optimizer else None)
    if world.leader:
        return ckpt
    for stale in landing.glob("*.safetensors") if landing.is_dir() else ():
        stale.unlink()
    adapter_path = landing / checkpoint_name(step)
    write_atomically(adapter_path, lambda tmp: _write(tmp, adapters))
    optimizer_path = None
    if has_optimizer:
        optimizer_path = landing / optimizer_name(step)
        write_atomically(optimizer_path, lambda tmp: _write(tmp, optimizer))
    return Checkpoint(step, adapter_path, optimizer_path)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


class RankedStop(StopControl):
    """A stop every rank agrees on: each asks at the same step boundary, and all stop if any one must
    (a signal wins over a time budget)."""

    def __init__(self, world: World, budget_s: float | None = None, clock: Callable[[], float] | None = None) -> None:
        kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
        super().__init__(budget_s, **kwargs)
        self.world = world

    def reason(self) -> str | None:
        own = super().reason()
        votes = _all_sum_ints([int(own == code) for code in STOP_CODES])
        return next((code for code, n in zip(STOP_CODES, votes, strict=True) if n), None)
