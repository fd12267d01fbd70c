"""The batch stream handed to mlx_lm's trainer: where checkpoints, stops and resumes hook into its loop.

mlx_lm's ``train`` draws training batches from ``iterate_batches(..., loop=True)`` one step at a time, and only
after the previous step has been evaluated. So the moment the trainer asks for batch ``n + 1`` is a safe point
after step ``n``: the feeder checkpoints there and, when asked to stop, simply ends the stream (the trainer then
saves its final weights and returns). Validation draws from the same function with ``loop=False``.

Resuming replays the data order of an uninterrupted run: the training stream draws its shuffles from numpy's
global generator seeded once, validation's own shuffle is undone (the generator state is restored after it), and
the first ``skip`` batches are drawn and dropped. So step 101 of a resumed run sees the batch step 101 of an
uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from pipeline.train.stop import StepBoundary

IterateBatches = Callable[..., Iterator[Any]]


class BatchFeeder:
    def __init__(self, base: IterateBatches, *, skip: int, steps: StepBoundary) -> None:
        self._base = base
        self._skip = skip
        self.steps = steps
        """Checkpoints and stops between steps; its ``steps_done`` counts the steps the feeder has seen finished
        (the last one is seen by the caller)."""

    def __call__(
        self,
        dataset: Any,
        batch_size: int,
        max_seq_length: int,
        loop: bool = False,
        seed: int | None = None,
        comm_group: Any = None,
    ) -> Iterator[Any]:
        inner = self._base(
            dataset=dataset,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            loop=loop,
            seed=seed,
            comm_group=comm_group,
        )
        if loop:
            return self._training_stream(inner)
        return _without_rng_side_effects(inner)

    def _training_stream(self, inner: Iterator[Any]) -> Iterator[Any]:
        steps = self.steps
        for _ in range(self._skip):
            next(inner)
        for batch in inner:
            if steps.steps_done:
                steps.save_if_due()
            if steps.stop_here():
                return
            yield batch
            steps.steps_done += 1


def _without_rng_side_effects(inner: Iterator[Any]) -> Iterator[Any]:
    """Validation batches, with numpy's global generator put back afterwards (keeps the training order fixed)."""
    saved = np.random.get_state()
    try:
        yield from inner
    finally:
        np.random.set_state(saved)
