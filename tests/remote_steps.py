"""A step function the remote tests run on the loopback host (through the host's python)."""

from __future__ import annotations

from typing import Any

from pipeline.jobs.context import StepContext


def count_lines(ctx: StepContext) -> dict[str, Any]:
    """Counts the lines of its inputs into an artifact; says where it ran."""
    total = sum(len(p.read_text().splitlines()) for p in ctx.inputs)
    ctx.emit("counted", lines=total)
    ctx.artifact("count.txt").write_text(f"{total}\n")
    return {"lines": total, "session_dir": str(ctx.session_dir)}


def ring_sum(ctx: StepContext) -> dict[str, Any]:
    """Joins the ranks of the step over MLX's ring backend (after ``sleep`` seconds) and sums rank + 1 across
    them; a rank named in the ``fail_rank`` param fails after the sum."""
    import os
    import time

    import mlx.core as mx

    time.sleep(float(ctx.params.get("sleep", 0)))
    group = mx.distributed.init(backend="ring", strict=True)
    total = mx.distributed.all_sum(mx.array([float(group.rank() + 1)]), group=group)
    mx.eval(total)
    print(f"rank {group.rank()} of {group.size()}: sum {total.item()}", flush=True)
    ctx.artifact(f"rank{group.rank()}.txt").write_text(f"{total.item()}\n")
    if ctx.params.get("fail_rank") == group.rank():
        print("this rank fails on purpose", flush=True)
        raise SystemExit(7)
    return {"sum": total.item(), "size": group.size(), "rank": group.rank(), "env_rank": os.environ["MLX_RANK"]}
