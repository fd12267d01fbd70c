"""The mlx side of a training attempt: load and adapt the model, build the optimizer, restore a checkpoint.

Imported only inside the training process (it imports mlx and mlx_lm at module level). The adaptation follows
``mlx_lm lora`` exactly (``linear_to_lora_layers`` for LoRA/DoRA, the last ``num_layers`` blocks unfrozen for a full
fine-tune), so that adapters written here load with ``mlx_lm.server --adapter-path`` and ``mlx_lm.fuse``.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten
from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers
from mlx_lm.utils import load

from pipeline.jobs.context import StepFailed
from pipeline.train.checkpoints import Checkpoint
from pipeline.train.params import TrainRecipe

OPTIMIZERS: dict[str, Any] = {
    "adam": optim.Adam,
    "adamw": optim.AdamW,
    "sgd": optim.SGD,
    "adafactor": optim.Adafactor,
    "muon": optim.Muon,
}


def load_trainable_model(model_ref: str, recipe: TrainRecipe) -> tuple[Any, Any, tuple[int, int]]:
    """The model with only the trained parameters unfrozen, its tokenizer, and (trainable, total) counts."""
    try:
        model, tokenizer = load(model_ref)[:2]
    except Exception as exc:
        raise StepFailed(f"params.model: could not load {model_ref}: {type(exc).__name__}: {exc}") from exc
    layers = model.layers
    if recipe.num_layers > len(layers):
        raise StepFailed(f"params.num_layers: {recipe.num_layers} requested, the model has {len(layers)} blocks")
    model.freeze()
    if recipe.fine_tune_type == "full":
        for layer in layers[-max(recipe.num_layers, 0) :]:
            layer.unfreeze()
    else:
        lora = recipe.lora_parameters.model_dump(exclude_none=True)
        linear_to_lora_layers(model, recipe.num_layers, lora, use_dora=recipe.fine_tune_type == "dora")
    return model, tokenizer, (parameter_count(model.trainable_parameters()), parameter_count(model.parameters()))


def parameter_count(tree: Any) -> int:
    return sum(int(v.size) for v in save_tensors(tree).values())


def build_optimizer(recipe: TrainRecipe) -> optim.Optimizer:
    lr: Any = recipe.learning_rate
    if recipe.lr_schedule is not None:
        lr = build_schedule(recipe.lr_schedule.model_dump())
    optimizer: optim.Optimizer = OPTIMIZERS[recipe.optimizer](learning_rate=lr)
    return optimizer


def save_tensors(tree: Any) -> dict[str, mx.array]:
    """A parameter or optimizer-state tree as the flat name -> array mapping safetensors stores."""
    flat: list[tuple[str, mx.array]] = tree_flatten(tree)  # type: ignore[assignment]
    return dict(flat)


def restore_checkpoint(model: Any, optimizer: optim.Optimizer, ckpt: Checkpoint, recipe: TrainRecipe) -> bool:
    """Load the checkpoint's weights (checked against the trainable parameters) and, if saved, optimizer state.

    Returns whether the optimizer state was restored; without it (a checkpoint from plain mlx_lm) the step
    counter is still moved so that a learning-rate schedule continues where it was.
    """
    try:
        weights = mx.load(str(ckpt.adapters))
    except Exception as exc:
        raise StepFailed(f"checkpoint {ckpt.adapters} is unreadable: {exc}") from exc
    assert isinstance(weights, dict)
    expected = save_tensors(model.trainable_parameters())
    problems = [f"{k}: not trained by this recipe" for k in weights if k not in expected]
    problems += [f"{k}: missing" for k in expected if k not in weights]
    problems += [
        f"{k}: shape {tuple(w.shape)} != {tuple(expected[k].shape)}"
        for k, w in weights.items()
        if k in expected and w.shape != expected[k].shape
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... {len(problems) - 5} more" if len(problems) > 5 else "")
        raise StepFailed(f"checkpoint {ckpt.adapters.name} does not fit this model and recipe: {shown}")
    model.load_weights(list(weights.items()), strict=False)
    if ckpt.optimizer is not None:
        state = mx.load(str(ckpt.optimizer))
        assert isinstance(state, dict)
        optimizer.state = tree_unflatten(list(state.items()))
        if recipe.lr_schedule is None:
            optimizer.learning_rate = mx.array(recipe.learning_rate)
        return True
    updates = ckpt.step // recipe.grad_accumulation_steps
    optimizer.state["step"] = mx.array(updates, mx.uint64)
    return False
