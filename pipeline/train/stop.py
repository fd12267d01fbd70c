"""When a training job must end early, and how it is told: a signal (cancel, the engine's timeout) or its own budget.

A signal only sets a flag; the training loop looks at it between two steps, saves a checkpoint and returns. Raising
from the signal handler instead (what the generic step runner does) could interrupt a save half-way, and would lose
the steps done since the last checkpoint.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopControl:
    def __init__(self, budget_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadline = clock() + budget_s if budget_s is not None else None
        self.budget_s = budget_s
        self.signal_name: str | None = None
        self.signum: int | None = None

    def request(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            self.signal_name = signal.Signals(signum).name

    def reason(self) -> str | None:
        """``"signal"`` or ``"timeout"`` once the job should stop, else None."""
        if self.signum is not None:
            return "signal"
        if self._deadline is not None and self._clock() >= self._deadline:
            return "timeout"
        return None

    @contextmanager
    def installed(self) -> Iterator[StopControl]:
        """Route SIGTERM/SIGINT to ``request`` while the block runs; restore the previous handlers after."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self.request(signum)

        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def pass_signal_on(self) -> None:
        """Deliver the caught signal again, now to the handler that was there before (the step runner's)."""
        if self.signum is not None:
            signal.raise_signal(self.signum)


class TrainingStopped(Exception):
    """The training loop ended early and its checkpoint is saved; ``reason`` is ``signal`` or ``timeout``."""

    def __init__(self, reason: str, step: int) -> None:
        super().__init__(f"stopped ({reason}) at step {step}")
        self.reason = reason
        self.step = step
