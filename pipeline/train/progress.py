"""Turns the trainer's loss reports into structured ``train`` progress events (the live loss curve of the UI).

mlx_lm calls a ``TrainingCallback`` with ``on_train_loss_report`` every ``steps_per_report`` steps and with
``on_val_loss_report`` before the first step, every ``steps_per_eval`` steps and before the last one. The reporter
is duck-typed to that interface (so this module needs no mlx import) and numbers steps from the start of the whole
run, not of this attempt, so that a resumed run continues the same curve.

One ``train`` event per train report carries: ``step``, ``total_steps``, ``train_loss``, ``val_loss`` (only when a
validation ran since the previous report, with ``val_step`` = the number of steps done when it ran, else null),
``learning_rate``, ``tokens_per_s``, ``iterations_per_s``, ``trained_tokens`` (this attempt), ``peak_memory_gb``,
``elapsed_s`` and ``eta_s``.
"""

from __future__ import annotations

import io
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

from pipeline.jobs.context import EVENT_PREFIX

Emit = Callable[..., None]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@dataclass
class TrainReport:
    step: int
    train_loss: float | None
    val_loss: float | None
    val_step: int | None
    learning_rate: float | None
    tokens_per_s: float | None
    peak_memory_gb: float | None


@dataclass
class ProgressReporter:
    """mlx_lm ``TrainingCallback`` look-alike that emits ``train`` events and keeps the curve for the summary."""

    emit: Emit
    total_steps: int
    step_offset: int = 0
    """Steps already done before this attempt (the checkpoint it resumed from)."""
    val_iteration_offset: int = 0
    """Added to a validation report's ``iteration`` to get the steps done when it ran (mlx_lm: 0)."""
    clock: Callable[[], float] = time.monotonic
    reports: list[TrainReport] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    _pending_val: tuple[int, float] | None = None
    _started: float = 0.0

    def __post_init__(self) -> None:
        self._started = self.clock()

    def on_val_loss_report(self, val_info: dict[str, Any]) -> None:
        step = self.step_offset + int(val_info["iteration"]) + self.val_iteration_offset
        loss = float(val_info["val_loss"])
        self.val_losses.append((step, loss))
        self._pending_val = (step, loss)

    def on_train_loss_report(self, train_info: dict[str, Any]) -> None:
        step = self.step_offset + int(train_info["iteration"])
        self._send(
            step=step,
            train_loss=_num(train_info.get("train_loss")),
            learning_rate=_num(train_info.get("learning_rate")),
            tokens_per_s=_num(train_info.get("tokens_per_second")),
            iterations_per_s=_num(train_info.get("iterations_per_second")),
            trained_tokens=train_info.get("trained_tokens"),
            peak_memory_gb=_num(train_info.get("peak_memory")),
        )

    def flush(self, step: int) -> None:
        """Emit a validation that no train report followed (the run stopped early)."""
        if self._pending_val is not None:
            self._send(step=step, train_loss=None, learning_rate=None, tokens_per_s=None, peak_memory_gb=None)

    def _send(self, *, step: int, **values: Any) -> None:
        val_step, val_loss = self._pending_val if self._pending_val else (None, None)
        self._pending_val = None
        elapsed = self.clock() - self._started
        rate = values.get("iterations_per_s")
        eta = (self.total_steps - step) / rate if rate else None
        report = TrainReport(
            step=step,
            train_loss=values.get("train_loss"),
            val_loss=val_loss,
            val_step=val_step,
            learning_rate=values.get("learning_rate"),
            tokens_per_s=values.get("tokens_per_s"),
            peak_memory_gb=values.get("peak_memory_gb"),
        )
        self.reports.append(report)
        self.emit(
            "train",
            step=step,
            total_steps=self.total_steps,
            val_loss=val_loss,
            val_step=val_step,
            elapsed_s=round(elapsed, 3),
            eta_s=round(eta, 1) if eta is not None else None,
            **values,
        )

    # -- figures for the step summary ----------------------------------------------------------------------
    def last_train_loss(self) -> float | None:
        return next((r.train_loss for r in reversed(self.reports) if r.train_loss is not None), None)

    def last_val_loss(self) -> float | None:
        return self.val_losses[-1][1] if self.val_losses else None

    def steady_tokens_per_s(self) -> float | None:
        """Median tokens/s over the reports after the first (the first one includes graph compilation)."""
        rates = [r.tokens_per_s for r in self.reports if r.tokens_per_s is not None]
        steady = sorted(rates[1:] or rates)
        return steady[len(steady) // 2] if steady else None

    def peak_memory_gb(self) -> float | None:
        peaks = [r.peak_memory_gb for r in self.reports if r.peak_memory_gb is not None]
        return max(peaks) if peaks else None


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class _LineStart:
    """Whether the combined stdout+stderr stream is at the start of a line (shared by both writers)."""

    def __init__(self) -> None:
        self.at_start = True


class PlainTextWriter(io.TextIOBase):
    """A stdout/stderr stand-in that keeps the step log plain text and every event line parseable.

    Terminal escape codes are dropped and carriage-return redraws (progress bars) become lines. The engine reads
    stdout and stderr as one stream and recognises an event only at the start of a line, so an event written while
    a progress bar on stderr has left a line open first ends that line. Every write is flushed, to keep the two
    streams in order.
    """

    def __init__(self, target: TextIO, line: _LineStart | None = None) -> None:
        super().__init__()
        self._target = target
        self._line = line or _LineStart()

    def write(self, text: str) -> int:
        clean = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
        if self._line.at_start:
            clean = clean.lstrip("\n")
        elif clean.startswith(EVENT_PREFIX):
            clean = "\n" + clean
        if clean:
            self._target.write(clean)
            self._target.flush()
            self._line.at_start = clean.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


@contextmanager
def plain_stdout() -> Iterator[None]:
    """While training, mlx_lm prints rich tables and tqdm bars; keep them as plain lines beside the events."""
    original_out, original_err = sys.stdout, sys.stderr
    line = _LineStart()
    sys.stdout = cast(TextIO, PlainTextWriter(original_out, line))
    sys.stderr = cast(TextIO, PlainTextWriter(original_err, line))
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = original_out, original_err
