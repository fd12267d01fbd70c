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
