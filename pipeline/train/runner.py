"""The ``mlx_train`` step: fine-tune a local model with mlx_lm's trainer, live, stoppable and resumable.

It runs in the step's own child process (``pipeline.jobs.run_function``), in-process with mlx_lm: the model is
loaded, adapted (LoRA/DoRA layers, or the last blocks unfrozen for a full fine-tune) and handed to
``mlx_lm.tuner.trainer.train`` together with a ``ProgressReporter`` (``train`` events for the loss curve) and a
``BatchFeeder`` (checkpoints, stops and resumes at step boundaries; see ``pipeline.train.batches``).

Attempts and outcomes:
- a new attempt finds the newest checkpoint in the adapter folder, loads its adapter weights and optimizer
  state, emits ``resume`` with its step and trains the remaining steps (``resume = false`` starts over);
- SIGTERM (cancel, or the engine's timeout) or the job's own ``timeout`` ends the loop at the next step: the
  weights are saved as a checkpoint, a ``stopped`` event names the step, and the attempt ends as cancelled
  (signal) or failed (own timeout; a retry resumes);
- SIGKILL loses only the steps since the last checkpoint (``save_every``).

Preference training (``training_mode = "dpo"``) goes through the optional mlx-lm-lora package, see
``pipeline.train.dpo``.

Started as one of several data-parallel ranks (``ranks = N``), the job joins the ring (``pipeline.train.world``):
only rank 0 writes the adapter folder, every rank starts from rank 0's newest checkpoint, and stops are agreed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pipeline.jobs.context import StepContext, StepFailed
from pipeline.train.chat_data import Split, error_text, read_splits
from pipeline.train.checkpoints import (
    ADAPTER_CONFIG,
    ADAPTER_FILE,
    Checkpoint,
    checkpoint_name,
    list_checkpoints,
    newest_checkpoint,
    optimizer_name,
    remove_partials,
    write_atomically,
    write_text_atomically,
)
from pipeline.train.dpo import SCRATCH_FILE
from pipeline.train.params import TrainParams
from pipeline.train.progress import ProgressReporter, plain_stdout
from pipeline.train.step_params import adapter_config, resolve_model, with_lora_config
from pipeline.train.stop import StepBoundary, StopControl, TrainingStopped
from pipeline.train.world import RankedStop, join, share_checkpoint

BAD_LINES_LOGGED = 20
RECIPE_KEYS_THAT_MUST_MATCH = ("model", "fine_tune_type", "num_layers", "lora_parameters", "training_mode")


def run(ctx: StepContext) -> dict[str, Any]:
    try:
        params = TrainParams.model_validate(ctx.params)
    except ValidationError as exc:
        raise StepFailed(f"params: {error_text(exc)}") from None
    if params.lora_config:
        params = with_lora_config(params, ctx)
    return TrainingJob(ctx, params).run()


@dataclass
class Attempt:
    """One attempt's model, optimizer and where it starts; ``save(step)`` writes a checkpoint, ``steps`` saves and
    stops between the trainer's steps."""

    model: Any
    tokenizer: Any
    optimizer: Any
    counts: tuple[int, int]
    start_step: int
    resumed: bool
    save: Callable[[int], None]
    steps: StepBoundary


class TrainingJob:
    def __init__(self, ctx: StepContext, params: TrainParams) -> None:
        self.ctx = ctx
        self.params = params
        self.started = time.monotonic()
        self.world = join()
        self.stop = RankedStop(self.world, params.timeout) if self.world.size > 1 else StopControl(params.timeout)
        self.model_ref = resolve_model(params.model, ctx)
        self.data_dir = ctx.resolve(params.data)
        self.adapter_dir = ctx.resolve(params.adapter_path) if params.adapter_path else ctx.artifacts_dir / "adapters"

    # -- the attempt -------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if self.params.training_mode == "dpo":
            from pipeline.train.dpo import require_mlx_lm_lora

            require_mlx_lm_lora(self.ctx)
            if self.world.size > 1:
                raise StepFailed("training_mode = 'dpo' runs on one rank; set ranks = 1")
        if self.params.batch_size % self.world.size:  # lora_config may have set it, past config check
            raise StepFailed(
                f"params.batch_size: {self.params.batch_size} is not divisible by ranks = {self.world.size} "
                "(each rank trains batch_size / ranks rows per step)"
            )
        splits = self.load_data()
        start = self.prepare_adapter_dir() if self.world.leader else None
        if self.world.size > 1:  # rank 0 decides where all start; the others get its checkpoint over the ring
            start = share_checkpoint(self.world, start, self.ctx.artifacts_dir / "resume")
        if start is not None and start.step >= self.params.iters:
            return self.already_done(start)
        try:
            with self.stop.installed(), plain_stdout():
                if self.params.training_mode == "dpo":
                    from pipeline.train.dpo import train_dpo

                    return train_dpo(self, splits, start)
                from pipeline.train.sft import train_sft

                return train_sft(self, splits, start)
        except TrainingStopped as stop:
            return self.end_stopped(stop)

    def load_data(self) -> dict[str, Split]:
        if not self.data_dir.is_dir():
            raise StepFailed(f"params.data: no data folder at {self.data_dir}")
        splits = read_splits(self.data_dir, self.params.training_mode)
        bad = [b for s in splits.values() for b in s.bad]
        for item in bad[:BAD_LINES_LOGGED]:
            self.ctx.log(f"skipped bad training row: {item}")
        if len(bad) > BAD_LINES_LOGGED:
            self.ctx.log(f"... and {len(bad) - BAD_LINES_LOGGED} more bad rows")
        counts = {name: len(s.rows) for name, s in splits.items()}
        self.ctx.emit("data", rows=counts, bad_rows=len(bad), formats={n: s.format for n, s in splits.items()})
        train, valid = splits["train"], splits["valid"]
        batch = self.params.batch_size
        if not train.present:
            raise StepFailed(f"params.data: {train.path} does not exist")
        if len(train.rows) < batch:
            raise StepFailed(
                f"{train.path}: {len(train.rows)} usable rows ({len(train.bad)} bad), fewer than batch_size {batch}"
            )
        if valid.rows and len(valid.rows) < batch:
            raise StepFailed(
                f"{valid.path}: {len(valid.rows)} usable rows, fewer than batch_size {batch}; "
                "add rows or lower batch_size"
            )
        if not valid.rows:
            self.ctx.log(f"warning: no usable rows in {valid.path}; training without validation loss")
        return splits

    def prepare_adapter_dir(self) -> Checkpoint | None:
        """Clean half-written files; return the checkpoint to resume from (None: start at step 0)."""
        self.adapter_dir.mkdir(parents=True, exist_ok=True)
        for path in remove_partials(self.adapter_dir):
            self.ctx.log(f"removed a half-written file from a killed save: {path.name}")
        found = list_checkpoints(self.adapter_dir)
        if not self.params.resume:
            for ckpt in found:
                ckpt.adapters.unlink(missing_ok=True)
                if ckpt.optimizer:
                    ckpt.optimizer.unlink(missing_ok=True)
            (self.adapter_dir / ADAPTER_FILE).unlink(missing_ok=True)
            if found:
                self.ctx.log(f"resume = false: removed {len(found)} old checkpoints from {self.adapter_dir}")
            return None
        newest = newest_checkpoint(self.adapter_dir)
        if newest is None:
            return None
        self.check_same_recipe(newest)
        return newest

    def check_same_recipe(self, ckpt: Checkpoint) -> None:
        config_path = self.adapter_dir / ADAPTER_CONFIG
        try:
            saved = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # checkpoints from a plain ``mlx_lm lora`` run: the weight check at load time still applies
        wanted = adapter_config(self.params, self.model_ref, self.data_dir, self.adapter_dir)
        changed = [k for k in RECIPE_KEYS_THAT_MUST_MATCH if k in saved and saved[k] != wanted.get(k)]
        if changed:
            diffs = ", ".join(f"{k}: {saved[k]!r} -> {wanted.get(k)!r}" for k in changed)
            raise StepFailed(
                f"{self.adapter_dir} holds checkpoints (newest: step {ckpt.step}) of a different recipe ({diffs}); "
                "set resume = false to start over, or point adapter_path elsewhere"
            )

    def already_done(self, ckpt: Checkpoint) -> dict[str, Any]:
        self.ctx.emit("resume", step=ckpt.step, checkpoint=ckpt.adapters.name, total_steps=self.params.iters)
        self.ctx.log(f"checkpoint at step {ckpt.step} already covers iters = {self.params.iters}; nothing to train")
        return {
            "status": "completed",
            "steps": ckpt.step,
            "start_step": ckpt.step,
            "resumed_from": ckpt.step,
            "adapter_path": str(self.adapter_dir),
            "checkpoints": [c.adapters.name for c in list_checkpoints(self.adapter_dir)],
        }

    # -- what every attempt does, whatever the trainer ----------------------------------------------------------
    def begin(self, start: Checkpoint | None) -> Attempt:
        """Seed, load and adapt the model, build the optimizer, restore the checkpoint, record the recipe."""
        import mlx.core as mx
        import numpy as np

        from pipeline.train.mlx_model import build_optimizer, load_trainable_model, restore_checkpoint, save_tensors

        p = self.params
        mx.random.seed(p.seed)
        np.random.seed(p.seed)
        model, tokenizer, counts = load_trainable_model(self.model_ref, p)
        optimizer = build_optimizer(p)
        start_step = 0
        if start is not None:
            restored_optimizer = restore_checkpoint(model, optimizer, start, p)
            start_step = start.step
            self.ctx.emit(
                "resume",
                step=start_step,
                checkpoint=start.adapters.name,
                optimizer_state=restored_optimizer,
                total_steps=p.iters,
            )
            self.ctx.log(f"resuming from {start.adapters.name} (step {start_step} of {p.iters})")
        if self.world.leader:
            config = adapter_config(p, self.model_ref, self.data_dir, self.adapter_dir)
            write_text_atomically(self.adapter_dir / ADAPTER_CONFIG, json.dumps(config, indent=2) + "\n")

        def save(step: int) -> None:
            if not self.world.leader:  # only rank 0 writes the adapter folder
                return
            weights = save_tensors(model.trainable_parameters())
            opt_state = save_tensors(optimizer.state)
            meta = {"step": str(step), "total_steps": str(p.iters)}
            write_atomically(self.adapter_dir / optimizer_name(step), lambda t: mx.save_safetensors(str(t), opt_state))
            for name in (checkpoint_name(step), ADAPTER_FILE):
                write_atomically(self.adapter_dir / name, lambda t: mx.save_safetensors(str(t), weights, metadata=meta))
            self.ctx.emit("checkpoint", step=step, file=checkpoint_name(step))

        self.ctx.emit(
            "train_start",
            training_mode=p.training_mode,
            start_step=start_step,
            total_steps=p.iters,
            fine_tune_type=p.fine_tune_type,
            trainable_params=counts[0],
            total_params=counts[1],
            model=self.model_ref,
            adapter_path=str(self.adapter_dir),
        )
        steps = StepBoundary(start_step, p.save_every, p.grad_accumulation_steps, save, self.stop)
        return Attempt(model, tokenizer, optimizer, counts, start_step, start is not None, save, steps)

    def loop_args(self, attempt: Attempt) -> dict[str, Any]:
        """The training-loop arguments both trainers take under the same names: the steps left, and no saves of the
        trainer's own (checkpoints are written between steps by ``attempt.steps``; its final save goes to a scratch
        file)."""
        p = self.params
        remaining = p.iters - attempt.start_step
        return {
            "batch_size": p.batch_size,
            "iters": remaining,
            "val_batches": p.val_batches,
            "steps_per_eval": p.steps_per_eval,
            "steps_per_save": remaining + 1,
            "max_seq_length": p.max_seq_length,
            "adapter_file": str(self.adapter_dir / SCRATCH_FILE),
            "grad_checkpoint": p.grad_checkpoint,
        }

    def end(
        self,
        attempt: Attempt,
        reporter: ProgressReporter,
        *,
        train_wall: float,
        test_loss: Callable[[], float],
        splits: dict[str, Split],
    ) -> dict[str, Any]:
        """Save the last step, report a stop or the summary of a finished run (with ``test_loss()`` when the test
        split fills the test batches)."""
        p = self.params
        done = attempt.steps.done(p.iters - attempt.start_step)
        stopped = attempt.steps.stopped
        final_step = attempt.start_step + done
        if self.world.leader:
            (self.adapter_dir / SCRATCH_FILE).unlink(missing_ok=True)
            if final_step > 0 and not (self.adapter_dir / checkpoint_name(final_step)).exists():
                attempt.save(final_step)
        reporter.flush(final_step)
        if stopped:
            self.stopped(stopped, final_step)
        loss = test_loss() if self.test_batches_fit(splits["test"]) else None
        summary = {
            "status": "completed",
            "training_mode": p.training_mode,
            "fine_tune_type": p.fine_tune_type,
            "model": self.model_ref,
            "steps": final_step,
            "total_steps": p.iters,
            "start_step": attempt.start_step,
            "resumed_from": attempt.start_step if attempt.resumed else None,
            "steps_this_attempt": done,
            "final_train_loss": reporter.last_train_loss(),
            "final_val_loss": reporter.last_val_loss(),
            "first_val_loss": reporter.val_losses[0][1] if reporter.val_losses else None,
            "test_loss": loss,
            "test_ppl": math.exp(loss) if loss is not None and loss < 50 else None,
            "tokens_per_s": reporter.steady_tokens_per_s(),
            "peak_memory_gb": reporter.peak_memory_gb(),
            "train_wall_s": round(train_wall, 3),
            "wall_s": round(time.monotonic() - self.started, 3),
            "trainable_params": attempt.counts[0],
            "total_params": attempt.counts[1],
            "rows": {name: len(s.rows) for name, s in splits.items()},
            "bad_rows": sum(len(s.bad) for s in splits.values()),
            "adapter_path": str(self.adapter_dir),
            "adapter_file": str(self.adapter_dir / ADAPTER_FILE),
            "checkpoints": [c.adapters.name for c in list_checkpoints(self.adapter_dir)] if self.world.leader else [],
            "rank": self.world.rank,
            "ranks": self.world.size,
        }
        self.ctx.emit(
            "train_done",
            step=final_step,
            total_steps=p.iters,
            train_loss=summary["final_train_loss"],
            val_loss=summary["final_val_loss"],
            test_loss=loss,
            tokens_per_s=summary["tokens_per_s"],
        )
        return summary

    def test_batches_fit(self, test: Split) -> bool:
        p = self.params
        if p.test_batches == 0 or not test.rows:
            return False
        if len(test.rows) < p.batch_size:
            self.ctx.log(f"test loss skipped: {len(test.rows)} test rows, fewer than batch_size {p.batch_size}")
            return False
        return True

    def stopped(self, reason: str, step: int) -> None:
        """Report an early stop (the checkpoint is already safe) and leave the training loop's context."""
        self.ctx.emit(
            "stopped",
            reason="cancelled" if reason == "signal" else "timeout",
            signal=self.stop.signal_name,
            step=step,
            total_steps=self.params.iters,
            checkpoint=checkpoint_name(step) if step else None,
        )
        raise TrainingStopped(reason, step)

    def end_stopped(self, stop: TrainingStopped) -> dict[str, Any]:
        """End the attempt: as cancelled after a signal (the runner's own handler decides), failed after a timeout."""
        if stop.reason == "signal":
            self.ctx.log(f"stopped by {self.stop.signal_name} at step {stop.step}; checkpoint saved")
            self.stop.pass_signal_on()
            raise StepFailed(f"cancelled by {self.stop.signal_name} at step {stop.step}; checkpoint saved")
        saved = f"checkpoint {checkpoint_name(stop.step)} saved" if stop.step else "no step was finished"
        raise StepFailed(
            f"training time budget of {self.stop.budget_s:g} s used up at step {stop.step} of {self.params.iters}; "
            f"{saved}, a retry resumes from the newest checkpoint"
        )
