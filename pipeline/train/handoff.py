"""The training handoff package (``<session>/handoff/``): everything needed to run the same fine-tune elsewhere.

Contents: the prepared data (``data/``), the Stage C recipe manifest when there is one (``recipe/``), two
``mlx_lm lora --config`` files (``lora_config.local.yaml`` for the local model, ``lora_config.yaml`` for the
production Qwen3-Coder model), the base model reference (``base_model.json``; the local model itself in
``base_model/`` when small), the local run's adapters when given (``adapters/``), the exact commands
(``commands.sh``) and a README, then ``SHA256SUMS`` and ``manifest.json`` with the sha256 of every file.

The package is built in a temporary folder and renamed into place, so a killed build never leaves a package that
looks complete. ``phasef handoff verify DIR`` re-hashes it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.fsio import atomic_write_text, replace_folder
from pipeline.jobs.context import StepContext, StepFailed
from pipeline.train.chat_data import SPLITS, error_text
from pipeline.train.checkpoints import ADAPTER_CONFIG, ADAPTER_FILE
from pipeline.train.lora_config import LoraConfigProblem, lora_config, read_lora_config, recipe_defaults, to_yaml
from pipeline.train.manifest import MANIFEST_NAME, sha256_file, write_manifest, write_sums
from pipeline.train.params import HandoffParams, TrainRecipe

RUNS_DIR = "../handoff-runs"
"""Where the commands put new adapters: next to the package, so running them never alters the package."""
MB = 1 << 20


def build_step(ctx: StepContext) -> dict[str, Any]:
    """Builtin step: build the package from ``params`` (see ``HandoffParams``)."""
    try:
        params = HandoffParams.model_validate(ctx.params)
    except ValidationError as exc:
        raise StepFailed(f"params: {error_text(exc)}") from None
    summary = build_package(params, ctx.resolve, ctx.log)
    ctx.emit("handoff", path=summary["path"], files=summary["file_count"], manifest_sha256=summary["manifest_sha256"])
    return summary


def build_package(
    params: HandoffParams, resolve: Callable[[str], Path], log: Callable[[str], None] = print
) -> dict[str, Any]:
    out = resolve(params.out)
    data_dir = resolve(params.data)
    base_model = resolve(params.base_model)
    problems = []
    if not (data_dir / "train.jsonl").is_file():
        problems.append(f"params.data: no train.jsonl in {data_dir}")
    if not (base_model / "config.json").is_file():
        problems.append(f"params.base_model: no MLX model (config.json) in {base_model}")
    recipe = resolve(params.recipe) if params.recipe else None
    if recipe is not None and not recipe.exists():
        problems.append(f"params.recipe: {recipe} does not exist")
    adapters = resolve(params.adapters) if params.adapters else None
    if adapters is not None and not (adapters / ADAPTER_FILE).is_file():
        problems.append(f"params.adapters: no {ADAPTER_FILE} in {adapters}")
    defaults: dict[str, Any] = {}
    if params.lora_config:
        try:
            defaults = recipe_defaults(read_lora_config(resolve(params.lora_config)))
        except LoraConfigProblem as exc:
            problems.append(f"params.lora_config: {exc}")
    if problems:
        raise StepFailed("; ".join(problems))
    try:
        recipe_local = params.local_recipe(defaults)
        recipe_production = params.production_recipe(recipe_local)
    except ValidationError as exc:
        raise StepFailed(f"params.lora_config {params.lora_config}: {error_text(exc)}") from None

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        model_ref = _base_model(staging, base_model, params, log)
        _copy_tree(data_dir, staging / "data")
        if recipe is not None:
            _copy_any(recipe, staging / "recipe" / recipe.name)
        if adapters is not None:
            for name in (ADAPTER_FILE, ADAPTER_CONFIG):
                if (adapters / name).is_file():
                    _copy_any(adapters / name, staging / "adapters" / name)
        has_test = (data_dir / "test.jsonl").is_file() and (data_dir / "test.jsonl").stat().st_size > 0
        local_model = model_ref["local"]["use_as"]
        local = lora_config(
            recipe_local, model=local_model, data="data", adapter_path=f"{RUNS_DIR}/local", test=has_test
        )
        production = lora_config(
            recipe_production,
            model=params.production_model,
            data="data",
            adapter_path=f"{RUNS_DIR}/production",
            test=has_test,
        )
        atomic_write_text(
            staging / "lora_config.local.yaml",
            to_yaml(local, "mlx_lm lora --config lora_config.local.yaml  (local run, paths relative to this folder)"),
        )
        production_note = f"mlx_lm lora --config lora_config.yaml  (production track: {params.production_model})"
        atomic_write_text(staging / "lora_config.yaml", to_yaml(production, production_note))
        atomic_write_text(staging / "base_model.json", json.dumps(model_ref, indent=2) + "\n")
        atomic_write_text(staging / "commands.sh", commands_sh(params, local_model, adapters is not None))
        os.chmod(staging / "commands.sh", 0o755)
        atomic_write_text(
            staging / "README.md", readme(params, recipe_local, model_ref, recipe, adapters is not None, has_test)
        )
        write_sums(staging)
        manifest = write_manifest(
            staging,
            {"base_model": model_ref["local"]["name"], "production_model": params.production_model},
        )
        replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"handoff package written to {out} ({manifest['file_count']} files, {manifest['total_bytes']} bytes)")
    return {
        "path": str(out),
        "file_count": manifest["file_count"],
        "total_bytes": manifest["total_bytes"],
        "manifest_sha256": sha256_file(out / MANIFEST_NAME),
        "base_model": model_ref["local"]["name"],
        "base_model_copied": model_ref["local"]["copied"],
        "production_model": params.production_model,
        "recipe": recipe.name if recipe else None,
        "adapters_included": adapters is not None,
    }


def _base_model(staging: Path, base_model: Path, params: HandoffParams, log: Callable[[str], None]) -> dict[str, Any]:
    """Reference the local model by its files' hashes; copy it in when it is small enough to travel along."""
    files = sorted(p for p in base_model.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    copied = size <= params.copy_model_max_mb * MB
    if copied:
        _copy_tree(base_model, staging / "base_model")
    else:
        log(f"base model {base_model} is {size / MB:.0f} MB: referenced by hash, not copied")
    config = json.loads((base_model / "config.json").read_text(encoding="utf-8"))
    return {
        "local": {
            "name": base_model.name,
            "source_path": str(base_model),
            "use_as": "base_model" if copied else str(base_model),
            "copied": copied,
            "model_type": config.get("model_type"),
            "hidden_size": config.get("hidden_size"),
            "num_hidden_layers": config.get("num_hidden_layers"),
            "bytes": size,
            "files": {p.relative_to(base_model).as_posix(): sha256_file(p) for p in files},
        },
        "production": {
            "name": params.production_model,
            "source": "huggingface",
            "note": "fetched by mlx_lm on first use; Apple silicon with enough unified memory for the model",
        },
    }


def _copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".*", "__pycache__"))


def _copy_any(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        _copy_tree(src, dest)
    else:
        shutil.copy2(src, dest)


def commands_sh(params: HandoffParams, local_model: str, has_adapters: bool) -> str:
    adapters_note = (
        "# ./adapters holds the adapters of the run this package was built from (for comparison).\n"
        if has_adapters
        else ""
    )
    return f"""#!/bin/sh
# The exact commands to reproduce the fine-tune recorded in this package.
# Usage: sh commands.sh [local|production]     (default: local)
# New adapters go to {RUNS_DIR}/<track>, outside the package, so the package stays verifiable.
{adapters_note}set -eu
cd "$(dirname "$0")"
track="${{1:-local}}"

# 1. The package is byte-for-byte the one that was built.
if command -v phasef >/dev/null 2>&1; then
  phasef handoff verify .
else
  sha256sum -c SHA256SUMS --quiet
fi

case "$track" in
  local)
    # 2. Fine-tune the local base model ({local_model}) on data/ with the recorded recipe.
    python -m mlx_lm lora --config lora_config.local.yaml
    # 3. Serve base model + adapter on loopback for the re-evaluation with the same gates.
    echo "serve: python -m mlx_lm server --model {local_model} --adapter-path {RUNS_DIR}/local --host 127.0.0.1"
    ;;
  production)
    # 2. Fine-tune {params.production_model} (Apple silicon; the model is fetched on first use).
    python -m mlx_lm lora --config lora_config.yaml
    # A run stopped part-way continues from its newest checkpoint, for example:
    #   python -m mlx_lm lora --config lora_config.yaml \\
    #     --resume-adapter-file {RUNS_DIR}/production/0000100_adapters.safetensors --iters <remaining>
    echo "serve: python -m mlx_lm server --model {params.production_model} --adapter-path {RUNS_DIR}/production"
    ;;
  *)
    echo "usage: sh commands.sh [local|production]" >&2
    exit 2
    ;;
esac
"""


def readme(
    params: HandoffParams,
    local_recipe: TrainRecipe,
    model_ref: dict[str, Any],
    recipe: Path | None,
    has_adapters: bool,
    has_test: bool,
) -> str:
    local = model_ref["local"]
    splits = ", ".join(f"{s}.jsonl" for s in SPLITS if s != "test" or has_test)
    rows = [
        f"- `data/`: the prepared training data in mlx_lm chat format ({splits})",
        f"- `recipe/{recipe.name}`: the data recipe manifest it was built with" if recipe else None,
        "- `lora_config.local.yaml`: the recipe for the local base model (`mlx_lm lora --config`)",
        f"- `lora_config.yaml`: the same recipe for the production model `{params.production_model}`",
        "- `base_model.json`: the base models, the local one with the sha256 of each of its files",
        f"- `base_model/`: the local base model ({local['model_type']}, hidden {local['hidden_size']}, "
        f"{local['num_hidden_layers']} blocks)"
        if local["copied"]
        else f"- the local base model is not copied (too large); it was at `{local['source_path']}`",
        "- `adapters/`: the adapters the local run produced" if has_adapters else None,
        "- `commands.sh`: the exact commands (`sh commands.sh local` or `sh commands.sh production`)",
        "- `SHA256SUMS`, `manifest.json`: the sha256 of every file",
    ]
    body = "\n".join(r for r in rows if r)
    return f"""# Training handoff package

A fine-tune recipe that runs the same way on another machine.

## Contents
{body}

## Check, then run
```sh
phasef handoff verify .        # or: sha256sum -c SHA256SUMS
sh commands.sh local           # the local base model
sh commands.sh production      # {params.production_model}, on Apple silicon
```
Adapters are written to `{RUNS_DIR}/<track>/` (next to this folder, so the package itself never changes):
`NNNNNNN_adapters.safetensors` every {local_recipe.save_every} steps and `adapters.safetensors` at the end.
After training, serve the base model with `--adapter-path` and evaluate again with the same gates.
"""
