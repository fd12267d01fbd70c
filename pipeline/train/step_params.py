"""The ``mlx_train`` step's params resolved against its context: the defaults of a named lora config file, the model
(a local folder or a repo id) and the ``adapter_config.json`` written beside the weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.jobs.context import StepContext, StepFailed
from pipeline.train.chat_data import error_text
from pipeline.train.lora_config import LoraConfigProblem, read_lora_config, recipe_defaults
from pipeline.train.params import TrainParams


def with_lora_config(params: TrainParams, ctx: StepContext) -> TrainParams:
    """Fill the hyperparameters the step's params leave unset from the named lora config file."""
    assert params.lora_config is not None
    path = ctx.resolve(params.lora_config)
    try:
        defaults = recipe_defaults(read_lora_config(path))
    except LoraConfigProblem as exc:
        raise StepFailed(f"params.lora_config: {exc}") from None
    explicit = params.model_dump(exclude_unset=True)
    applied = sorted(k for k in defaults if k not in explicit)
    try:
        merged = TrainParams.model_validate({**defaults, **explicit})
    except ValidationError as exc:
        raise StepFailed(f"{path}: {error_text(exc)}") from None
    ctx.log(f"hyperparameters from {path}: {', '.join(applied) or 'none (params set them all)'}")
    return merged


def resolve_model(raw: str, ctx: StepContext) -> str:
    """A local model folder (must exist) or a Hugging Face repo id (``owner/name``, left to mlx_lm to fetch)."""
    path = ctx.resolve(raw)
    if path.is_dir():
        return str(path)
    looks_like_repo = "{" not in raw and not raw.startswith((".", "/", "~")) and raw.count("/") == 1
    if looks_like_repo:
        return raw
    raise StepFailed(f"params.model: no model folder at {path}")


def adapter_config(params: TrainParams, model_ref: str, data_dir: Path, adapter_dir: Path) -> dict[str, Any]:
    """``adapter_config.json``: what ``mlx_lm.server --adapter-path`` and ``mlx_lm.fuse`` read back."""
    recipe = params.recipe().model_dump(mode="json")
    return {
        **recipe,
        "model": model_ref,
        "data": str(data_dir),
        "adapter_path": str(adapter_dir),
        "training_mode": params.training_mode,
        "train": True,
    }
