"""Operator retries: a failed or cancelled step of the running run is run again, with its retry budget afresh.

``Retries.request`` checks the request and journals ``step_retry_requested``; the scheduler calls ``requeue`` at
the top of each pass, which forgets the finished task of each requested step and of the steps that were blocked
behind it, so they are started again once their needs are met. A run that has ended is not retried here: resuming
the session runs its failed steps again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.errors import ControlError
from pipeline.parts import SessionParts

LIVE = ("running", "retrying", "waiting")
"""Step states that show the run is still going (a retry needs one)."""


class Retries:
    """The retries operators asked for in one running session."""

    def __init__(self, parts: SessionParts, selected: list[str], deps: dict[str, list[str]]) -> None:
        self.cfg = parts.cfg
        self.record = parts.recorder.record
        self.state = parts.recorder.state
        self.selected = selected
        self.deps = deps
        self.requested: set[str] = set()

    def request(
        self, step: str, *, operator: str, role: str | None, reason: str, run_cancelled: bool
    ) -> dict[str, Any]:
        """Journal an operator's request to run ``step`` again, or refuse it with a ``ControlError``."""
        if role is not None and role != "approver":
            raise ControlError(f"operator {operator} has role {role!r}; only approvers can retry steps")
        if not operator.strip():
            raise ControlError("an operator name is required")
        st = self.state.steps.get(step)
        if st is None or step not in self.selected:
            raise ControlError(f"no step {step!r} in this run")
        if self.cfg.step(step).kind == "gate":
            raise ControlError(f"{step} is a gate: it is decided, not retried")
        if st.state not in ("failed", "cancelled"):
            raise ControlError(f"{step} is {st.state}: only a failed or cancelled step can be retried")
        live = [k for k in self.selected if (s := self.state.steps.get(k)) is not None and s.state in LIVE]
        if run_cancelled or self.state.state not in ("running", "waiting") or not live:
            raise ControlError("the run is over (nothing else runs); resume the session to run its failed steps again")
        self.record("step_retry_requested", step, payload={"operator": operator, "reason": reason, "role": role})
        self.requested.add(step)
        return {"retry": step, "operator": operator}

    def requeue(self, tasks: dict[str, asyncio.Future[None]]) -> None:
        """(scheduler) Forget the finished task of each step to retry and of the steps blocked behind it."""
        for key in list(self.requested):
            if key in tasks and not tasks[key].done():
                continue  # its attempt is still winding down: requeued when it ends (which wakes the loop)
            self.requested.discard(key)
            tasks.pop(key, None)
            todo = [k for k in self.selected if key in self.deps[k]]
            while todo:
                k = todo.pop()
                st = self.state.steps.get(k)
                if k in tasks and tasks[k].done() and st is not None and st.state == "blocked":
                    del tasks[k]
                    todo.extend(d for d in self.selected if k in self.deps[d])
