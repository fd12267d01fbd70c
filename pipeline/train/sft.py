"""The supervised fine-tune (``training_mode = "sft"``): mlx_lm's own ``train`` with phasef's batch feeder.

The feeder (``pipeline.train.batches``) checkpoints, stops and resumes at step boundaries; the reporter
(``pipeline.train.progress``) turns mlx_lm's loss reports into ``train`` events. On data-parallel ranks mlx_lm
shards the batches and averages the gradients itself; checkpoints are written by rank 0 only (``Attempt.save``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from pipeline.train.chat_data import Split
from pipeline.train.checkpoints import Checkpoint
from pipeline.train.progress import ProgressReporter

if TYPE_CHECKING:
    from pipeline.train.runner import TrainingJob


def train_sft(job: TrainingJob, splits: dict[str, Split], start: Checkpoint | None) -> dict[str, Any]:
    """Supervised fine-tune with mlx_lm's trainer, fed by a ``BatchFeeder``, watched by a ``ProgressReporter``."""
    from mlx_lm.tuner.datasets import CacheDataset, create_dataset
    from mlx_lm.tuner.trainer import TrainingArgs, evaluate, iterate_batches, train

    from pipeline.train.batches import BatchFeeder

    p = job.params
    attempt = job.begin(start)
    feeder = BatchFeeder(iterate_batches, skip=attempt.start_step, steps=attempt.steps)
    reporter = ProgressReporter(job.ctx.emit, total_steps=p.iters, step_offset=attempt.start_step)

    def as_dataset(split: Split) -> Any:
        return CacheDataset(create_dataset(split.rows, attempt.tokenizer, p))

    args = TrainingArgs(
        **job.loop_args(attempt), steps_per_report=p.steps_per_report, grad_accumulation_steps=p.grad_accumulation_steps
    )
    train_started = time.monotonic()
    train(
        model=attempt.model,
        optimizer=attempt.optimizer,
        train_dataset=as_dataset(splits["train"]),
        val_dataset=as_dataset(splits["valid"]) if splits["valid"].rows else None,
        args=args,
        iterate_batches=feeder,
        training_callback=cast(Any, reporter),  # duck-typed TrainingCallback
    )

    def test_loss() -> float:
        return float(
            evaluate(
                model=attempt.model,
                dataset=as_dataset(splits["test"]),
                batch_size=p.batch_size,
                num_batches=p.test_batches,
                max_seq_length=p.max_seq_length,
            )
        )

    return job.end(attempt, reporter, train_wall=time.monotonic() - train_started, test_loss=test_loss, splits=splits)
