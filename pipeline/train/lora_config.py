"""A training recipe as the YAML file ``mlx_lm lora --config FILE`` reads.

Written by hand rather than with a YAML library: the file is a flat mapping plus two small nested ones
(``lora_parameters``, ``lr_schedule``), every scalar is written in a form YAML 1.1 (PyYAML, which mlx_lm uses)
reads back as the same type — strings in double quotes (JSON escapes), floats always with a dot or an exponent
sign, booleans as ``true``/``false``.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

from pipeline.fsio import read_text_bounded
from pipeline.train.params import TrainRecipe

CONFIG_KEYS_ORDER = (
    "model",
    "train",
    "data",
    "adapter_path",
    "fine_tune_type",
    "num_layers",
    "lora_parameters",
    "optimizer",
    "learning_rate",
    "lr_schedule",
    "iters",
    "batch_size",
    "grad_accumulation_steps",
    "max_seq_length",
    "mask_prompt",
    "grad_checkpoint",
    "steps_per_report",
    "steps_per_eval",
    "val_batches",
    "save_every",
    "test",
    "test_batches",
    "seed",
)


def lora_config(recipe: TrainRecipe, *, model: str, data: str, adapter_path: str, test: bool) -> dict[str, Any]:
    """The ``mlx_lm lora`` config mapping for a recipe (mlx_lm's own key names)."""
    values = recipe.model_dump(mode="json", exclude_none=True)
    values["lora_parameters"] = recipe.lora_parameters.model_dump(mode="json", exclude_none=True)
    test_batches = values.get("test_batches", 0)
    values.update(
        model=model,
        train=True,
        data=data,
        adapter_path=adapter_path,
        test=bool(test and test_batches != 0),
    )
    if recipe.fine_tune_type == "full":
        values.pop("lora_parameters")
    ordered = {k: values[k] for k in CONFIG_KEYS_ORDER if k in values}
    ordered.update({k: v for k, v in values.items() if k not in ordered})
    return ordered


def to_yaml(mapping: dict[str, Any], header: str = "") -> str:
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines.extend(_block(mapping, 0))
    return "\n".join(lines) + "\n"


def _block(mapping: dict[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            if value:
                out.append(f"{pad}{key}:")
                out.extend(_block(value, indent + 2))
            else:
                out.append(f"{pad}{key}: {{}}")
        elif isinstance(value, list):
            out.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            out.append(f"{pad}{key}: {_scalar(value)}")
    return out


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value} into an mlx_lm config")
        text = repr(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            if "." not in mantissa:
                mantissa += ".0"
            sign = "" if exponent.startswith(("-", "+")) else "+"
            return f"{mantissa}e{sign}{exponent}"
        return text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write a {type(value).__name__} into an mlx_lm config")


class LoraConfigProblem(Exception):
    """A lora config file that cannot be read; the message names the file (and line when known)."""


def read_lora_config(path: Path) -> dict[str, Any]:
    """An ``mlx_lm lora --config`` file as a mapping (JSON, or YAML as mlx_lm reads it)."""
    try:
        text = read_text_bounded(path, 16 * 2**20)
    except (OSError, UnicodeDecodeError) as exc:
        raise LoraConfigProblem(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            lora = importlib.import_module("mlx_lm.lora")
            data = importlib.import_module("yaml").load(text, Loader=lora.yaml_loader)
        except Exception as exc:
            raise LoraConfigProblem(f"{path}: neither JSON nor YAML: {exc}") from None
    if not isinstance(data, dict):
        raise LoraConfigProblem(f"{path}: expected a mapping of mlx_lm options")
    return data


def recipe_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The keys of a lora config that are recipe hyperparameters (model, data and paths are left out)."""
    return {k: v for k, v in config.items() if k in TrainRecipe.model_fields}
