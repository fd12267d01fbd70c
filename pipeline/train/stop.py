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
from dataclasses import dataclass
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


@dataclass
class StepBoundary:
    """What happens between two training steps, whatever trainer runs them: a checkpoint every ``save_every`` steps,
    and a stop (when asked for) only where an optimizer update ends, so no accumulated gradient is thrown away.

    The trainer's loop sets ``steps_done`` (steps finished in this attempt); step numbers count from the start of
    the run (``start_step`` + ``steps_done``)."""

    start_step: int
    save_every: int
    update_every: int
    save: Callable[[int], None]
    stop: StopControl
    steps_done: int = 0
    stopped: str | None = None
    """Why the loop ended early (``signal`` or ``timeout``), None while it runs or when it ran to the end."""

    @property
    def step(self) -> int:
        return self.start_step + self.steps_done

    def save_if_due(self) -> None:
        if self.step % self.save_every == 0:
            self.save(self.step)

    def stop_here(self) -> bool:
        """At an update boundary, whether to stop now (and remember why)."""
        if self.step % self.update_every:
            return False
        self.stopped = self.stop.reason()
        return self.stopped is not None

    def done(self, planned: int) -> int:
        """Steps this attempt finished: the ``planned`` ones unless it stopped early."""
        return self.steps_done if self.stopped else planned


class TrainingStopped(Exception):
    """The training loop ended early and its checkpoint is saved; ``reason`` is ``signal`` or ``timeout``."""

    def __init__(self, reason: str, step: int) -> None:
        super().__init__(f"stopped ({reason}) at step {step}")
        self.reason = reason
        self.step = step
