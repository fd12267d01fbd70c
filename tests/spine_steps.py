"""Step functions used by the spine tests (run in the engine's child processes)."""

from __future__ import annotations

import time
from typing import Any

from pipeline.jobs.context import StepCancelled, StepContext


def slow_saver(ctx: StepContext) -> dict[str, Any]:
    """Works until cancelled; on SIGTERM it takes a moment to save its state, as a trainer does."""
    ctx.emit("working", step=0)
    try:
        while True:
            time.sleep(0.05)
    except StepCancelled:
        time.sleep(0.5)
        ctx.artifact("saved.txt").write_text("checkpoint\n")
        raise
