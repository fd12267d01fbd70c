"""The ``params`` tables of the training step (``mlx_train``) and of the handoff step, as strict pydantic models.

Kept light (pydantic only) because ``phasef config check`` imports it to validate a plan without running it. The
field names of ``TrainRecipe`` are mlx_lm's own (``mlx_lm lora --config`` keys), so that a recipe written here is
the same recipe a person runs by hand from the handoff package.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PRODUCTION_MODEL = "mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit"
SCHEDULE_NAMES = ("cosine_decay", "exponential_decay", "linear_schedule", "step_decay")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraParameters(_Strict):
    """mlx_lm's ``lora_parameters`` (note: mlx_lm calls the multiplier ``scale``, not ``alpha``)."""

    rank: int = Field(default=8, ge=1)
    scale: float = Field(default=20.0, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    keys: list[str] | None = Field(default=None, description="module names to adapt; default: every linear layer")


class LrSchedule(_Strict):
    """mlx_lm's ``lr_schedule``: an ``mlx.optimizers.schedulers`` function, its arguments, an optional warmup."""

    name: Literal["cosine_decay", "exponential_decay", "linear_schedule", "step_decay"]
    arguments: list[float] = Field(min_length=1, description="the first one is the initial learning rate")
    warmup: int = Field(default=0, ge=0)
    warmup_init: float = Field(default=0.0, ge=0)


class TrainRecipe(_Strict):
    """The hyperparameters of one fine-tune, in mlx_lm's vocabulary."""

    fine_tune_type: Literal["lora", "dora", "full"] = "lora"
    num_layers: int = Field(default=-1, ge=-1, description="last N transformer blocks to train; -1 = all")
    lora_parameters: LoraParameters = Field(default_factory=LoraParameters)
    optimizer: Literal["adam", "adamw", "sgd", "adafactor", "muon"] = "adam"
    learning_rate: float = Field(default=1e-5, gt=0)
    lr_schedule: LrSchedule | None = None
    iters: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=4, ge=1)
    val_batches: int = Field(default=25, ge=-1, description="-1 = the whole validation set")
    test_batches: int = Field(default=25, ge=-1, description="after training; 0 = skip, -1 = whole test set")
    steps_per_report: int = Field(default=10, ge=1)
    steps_per_eval: int = Field(default=200, ge=1)
    save_every: int = Field(default=100, ge=1, description="checkpoint interval in steps")
    max_seq_length: int = Field(default=2048, ge=8)
    grad_checkpoint: bool = False
    grad_accumulation_steps: int = Field(default=1, ge=1)
    mask_prompt: bool = Field(default=False, description="train on the assistant turn only")
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> TrainRecipe:
        if self.num_layers == 0:
            raise ValueError("field 'num_layers': 0 trains nothing; use -1 for all layers")
        if self.save_every % self.grad_accumulation_steps:
            raise ValueError(
                "field 'save_every': must be a multiple of grad_accumulation_steps so that a checkpoint "
                "never falls inside an accumulation window"
            )
        return self


class DpoParams(_Strict):
    """Preference training through the optional ``mlx-lm-lora`` package."""

    beta: float = Field(default=0.1, gt=0)
    loss_type: Literal["sigmoid", "hinge", "ipo", "dpop"] = "sigmoid"
    delta: float = Field(default=50.0, ge=0, description="penalty weight of the dpop loss")


class TrainParams(TrainRecipe):
    """``params`` of an ``mlx_train`` step."""

    lora_config: str | None = Field(
        default=None,
        description="an mlx_lm lora config file (such as the one Stage C writes next to the data) whose "
        "hyperparameters apply wherever these params do not set them",
    )

    model: str = Field(
        description="base model: a local MLX model folder (relative paths are session-relative, "
        "{project}/{session} templates allowed) or a Hugging Face repo id such as mlx-community/..."
    )
    data: str = Field(description="folder with train.jsonl and valid.jsonl (test.jsonl optional)")
    training_mode: Literal["sft", "dpo"] = Field(
        default="sft", description="dpo needs the mlx-lm-lora package and preference rows"
    )
    dpo: DpoParams = Field(default_factory=DpoParams)
    adapter_path: str | None = Field(
        default=None, description="where checkpoints and adapters.safetensors go; default: <artifacts>/adapters"
    )
    resume: bool = Field(default=True, description="continue from the newest checkpoint in adapter_path")
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="seconds after which the job saves a checkpoint and stops (a retry resumes from it); "
        "keep it below the step's own timeout",
    )

    def recipe(self) -> TrainRecipe:
        """Only the hyperparameters (what the handoff package records)."""
        return TrainRecipe.model_validate(self.model_dump(include=set(TrainRecipe.model_fields)))


class HandoffParams(_Strict):
    """``params`` of the handoff step (``pipeline.train.handoff:build_step``)."""

    data: str = Field(description="the prepared mlx_lm data folder (train/valid/test.jsonl)")
    base_model: str = Field(description="the base model of the local run (a local MLX model folder)")
    production_model: str = Field(
        default=DEFAULT_PRODUCTION_MODEL, description="the Qwen3-Coder MLX model of the production track"
    )
    recipe: str | None = Field(default=None, description="the Stage C recipe manifest to copy, if any")
    adapters: str | None = Field(default=None, description="adapters of the local run to include, if any")
    train: dict[str, Any] = Field(
        default_factory=dict, description="the local run's hyperparameters (a TrainRecipe table)"
    )
    lora_config: str | None = Field(
        default=None, description="an mlx_lm lora config whose hyperparameters apply where 'train' sets none"
    )
    production_overrides: dict[str, Any] = Field(
        default_factory=lambda: {"num_layers": 16, "batch_size": 1, "iters": 1000, "grad_checkpoint": True},
        description="hyperparameters that differ on the production model (validated as a recipe)",
    )
    out: str = Field(default="handoff", description="package folder, session-relative")
    copy_model_max_mb: float = Field(
        default=64.0, ge=0, description="copy the local base model into the package when at most this size"
    )

    @model_validator(mode="after")
    def _valid_overrides(self) -> HandoffParams:
        try:
            TrainRecipe.model_validate(self.train)
        except ValidationError as exc:
            raise ValueError(f"field 'train': {_problems(exc)}") from None
        try:
            self.production_recipe(self.local_recipe())
        except ValidationError as exc:
            raise ValueError(f"field 'production_overrides': {_problems(exc)}") from None
        return self

    def local_recipe(self, defaults: dict[str, Any] | None = None) -> TrainRecipe:
        """The local run's recipe: the ``train`` table over ``defaults`` (from a lora config file)."""
        return TrainRecipe.model_validate({**(defaults or {}), **self.train})

    def production_recipe(self, local: TrainRecipe) -> TrainRecipe:
        return TrainRecipe.model_validate({**local.model_dump(), **self.production_overrides})


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"'{'.'.join(str(p) for p in err['loc']) or 'value'}': {err['msg']}" for err in exc.errors())
