"""Preference training (DPO) through the optional ``mlx-lm-lora`` package.

mlx_lm itself trains SFT only. When a plan asks for ``training_mode = "dpo"`` and the package is missing, the step
fails at once with a message saying so (before loading any model), instead of training something else. When it is
installed, its ``train_dpo`` runs under the same contract as SFT: the same ``train`` events, checkpoints with
optimizer state, resume, and stop at a step boundary. Its loop takes no batch iterator, so the hooks ride on its
loss-report callback, called every step; the data order of a resumed run is replayed by drawing the shuffles the
skipped steps drew. The rows are mlx-lm-lora's flat preference format (``prompt``, ``chosen``, ``rejected``,
optional ``system``), as Stage C writes them to ``dpo/``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pipeline.jobs.context import StepContext, StepFailed
from pipeline.train.chat_data import Split
from pipeline.train.checkpoints import Checkpoint
from pipeline.train.progress import ProgressReporter
from pipeline.train.stop import StepBoundary

if TYPE_CHECKING:
    from pipeline.train.runner import TrainingJob

SCRATCH_FILE = ".trainer-final.safetensors"

PACKAGE = "mlx-lm-lora"
MODULE = "mlx_lm_lora"


def mlx_lm_lora_version() -> str | None:
    """The installed version of mlx-lm-lora, or None when it is not installed."""
    if importlib.util.find_spec(MODULE) is None:
        return None
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def require_mlx_lm_lora(ctx: StepContext) -> str:
    version = mlx_lm_lora_version()
    if version is None:
        ctx.emit("train_unavailable", training_mode="dpo", package=PACKAGE, reason="not installed")
        raise StepFailed(
            f"training_mode 'dpo' needs the {PACKAGE} package, which is not installed in this environment "
            f"(pip install 'phasef[dpo]', or pip install {PACKAGE}); training_mode 'sft' needs only mlx-lm"
        )
    return version


class _StopAtStep(Exception):
    """Raised from the per-step callback to leave mlx-lm-lora's loop at a step boundary."""


class _DpoStepHook:
    """mlx-lm-lora's trainer reports every step (``steps_per_report = 1``): checkpoint, stop, and report the mean
    of every ``steps_per_report`` steps to the ``ProgressReporter`` like the SFT trainer would."""

    def __init__(self, reporter: ProgressReporter, steps: StepBoundary, *, report_every: int, remaining: int) -> None:
        self.reporter = reporter
        self.steps = steps
        self.report_every = report_every
        self.remaining = remaining
        self._losses: list[float] = []
        self._tokens = 0.0
        self._started = time.monotonic()

    def on_val_loss_report(self, val_info: dict[str, Any]) -> None:
        self.reporter.on_val_loss_report(val_info)

    def on_train_loss_report(self, train_info: dict[str, Any]) -> None:
        it = int(train_info["iteration"])
        self.steps.steps_done = it
        self._losses.append(float(train_info["train_loss"]))
        self._tokens += float(train_info.get("tokens_per_second", 0.0)) / max(
            float(train_info.get("iterations_per_second", 0.0)) or 1.0, 1e-9
        )
        if it % self.report_every == 0 or it == self.remaining:
            elapsed = max(time.monotonic() - self._started, 1e-9)
            self.reporter.on_train_loss_report(
                {
                    **train_info,
                    "train_loss": sum(self._losses) / len(self._losses),
                    "iterations_per_second": len(self._losses) / elapsed,
                    "tokens_per_second": self._tokens / elapsed,
                }
            )
            self._losses, self._tokens, self._started = [], 0.0, time.monotonic()
        self.steps.save_if_due()
        if it < self.remaining and self.steps.stop_here():
            raise _StopAtStep()


@contextmanager
def _device_info_on_cpu() -> Iterator[None]:
    """mlx-lm-lora sets Metal's wired limit from ``mx.device_info()``, which has no such key on a CPU device."""
    import mlx.core as mx

    original = mx.device_info
    info = original()
    if "max_recommended_working_set_size" in info:
        yield
        return

    def with_limit() -> dict[str, Any]:
        return {**info, "max_recommended_working_set_size": 0}

    setattr(mx, "device_info", with_limit)  # noqa: B010 (replacing a function of an extension module)
    try:
        yield
    finally:
        setattr(mx, "device_info", original)  # noqa: B010


def train_dpo(job: TrainingJob, splits: dict[str, Split], start: Checkpoint | None) -> dict[str, Any]:
    """Preference training with mlx-lm-lora's ``train_dpo``, under the same progress and checkpoint contract."""
    import numpy as np
    from mlx_lm.utils import load

    datasets = importlib.import_module(f"{MODULE}.trainer.datasets")
    trainer = importlib.import_module(f"{MODULE}.trainer.dpo_trainer")

    p = job.params
    attempt = job.begin(start)
    reference = load(job.model_ref)[0]
    reference.freeze()
    remaining = p.iters - attempt.start_step
    batches_per_pass = len(splits["train"].rows) // p.batch_size
    for _ in range(attempt.start_step):  # the trainer draws one shuffle per step: replay them
        np.random.permutation(batches_per_pass)
    reporter = ProgressReporter(
        job.ctx.emit, total_steps=p.iters, step_offset=attempt.start_step, val_iteration_offset=-1
    )
    hook = _DpoStepHook(reporter, attempt.steps, report_every=p.steps_per_report, remaining=remaining)

    def as_dataset(split: Split) -> Any:
        return datasets.DPODataset(split.rows, attempt.tokenizer)

    args = trainer.DPOTrainingArgs(
        **job.loop_args(attempt),
        steps_per_report=1,
        gradient_accumulation_steps=p.grad_accumulation_steps,
        beta=p.dpo.beta,
        loss_type=p.dpo.loss_type,
        delta=p.dpo.delta,
    )
    train_started = time.monotonic()
    with _device_info_on_cpu():
        try:
            trainer.train_dpo(
                model=attempt.model,
                ref_model=reference,
                optimizer=attempt.optimizer,
                train_dataset=as_dataset(splits["train"]),
                val_dataset=as_dataset(splits["valid"]) if splits["valid"].rows else None,
                args=args,
                training_callback=hook,
                loss_type=p.dpo.loss_type,
            )
        except _StopAtStep:
            pass

    def test_loss() -> float:
        loss, _, _, _ = trainer.evaluate_dpo(
            model=attempt.model,
            ref_model=reference,
            dataset=as_dataset(splits["test"]),
            batch_size=p.batch_size,
            num_batches=p.test_batches,
            beta=p.dpo.beta,
            delta=p.dpo.delta,
            max_seq_length=p.max_seq_length,
            loss_type=p.dpo.loss_type,
        )
        return float(loss)

    return job.end(attempt, reporter, train_wall=time.monotonic() - train_started, test_loss=test_loss, splits=splits)
