"""Step ``prepare-mlx-sft-data``: the files the trainers read, exactly in their formats.

Written into the step's artifact folder:

``train.jsonl``, ``valid.jsonl``, ``test.jsonl``
    ``mlx_lm.lora`` chat format, one ``{"messages": [...], "provenance": {...}}`` per line (``mlx_lm`` reads only
    ``messages``; the provenance rides along). ``--data <this folder>`` works as written.
``dpo/{split}.jsonl``
    the flat preference format of mlx-lm-lora (``system``, ``prompt``, ``chosen``, ``rejected`` strings). It can
    only say "an optional system message, then one user message", so a pair whose context has more turns is left
    out of it (counted), rather than flattened into a prompt the harness never sends.
``dpo_conversational/{split}.jsonl``
    TRL's conversational preference format (``prompt`` = the context messages, ``chosen``/``rejected`` = one
    assistant message each): every pair, with its exact context.
``lora_config.yaml``
    the SFT hyperparameters of the recipe as an ``mlx_lm.lora --config`` file (JSON, which YAML reads).

A split with no rows gets no file at all: ``mlx_lm`` fails on an empty file but skips a missing one.
Each SFT split must hold at least one batch, every row must end with the assistant's action, and, when the
target tokenizer is given, no row may be longer than the recipe's ``max_seq_length`` (the trainer would cut it)
and the rendered prompt must be a prefix of the rendered row (or ``mask_prompt`` would mask the wrong tokens).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.data.guard_split import SPLITS
from pipeline.data.jsonl import BadLineLog, file_sha256, read_rows, write_json, write_jsonl
from pipeline.data.rows import ChatMessage, Provenance
from pipeline.data.sft_dpo_recipe import DPO_DIR, RECIPE_NAME, SFT_DIR
from pipeline.data.step_io import StepParams, find_file, finish_bad_lines, load_params
from pipeline.data.token_length import ChatTokenCounter, TokenizerUnavailable
from pipeline.jobs.context import StepContext, StepFailed
from pipeline.traces.reader import BadLine

CONVERSATIONAL_DIR = "dpo_conversational"
LORA_CONFIG_NAME = "lora_config.yaml"


class PrepareParams(StepParams):
    input: str | list[str] | None = None
    """the recipe folder (``recipe.json``, ``sft/``, ``dpo/``); default: the step's declared inputs"""
    tokenizer: str | None = None
    """the target model's folder: when given, every row is rendered and checked against ``max_seq_length``"""
    model: str | None = None
    """model path written into ``lora_config.yaml``; default: the recipe's ``base_model``"""


class SftRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    messages: list[ChatMessage] = Field(min_length=2)
    provenance: Provenance


class DpoRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    prompt: list[ChatMessage] = Field(min_length=1)
    chosen: str
    rejected: str
    provenance: Provenance


def mlx_chat_row(row: SftRow) -> dict[str, Any]:
    return {"messages": [m.model_dump() for m in row.messages], "provenance": row.provenance.model_dump()}


def flat_dpo_row(row: DpoRow) -> dict[str, Any] | None:
    """mlx-lm-lora's flat pair, or None when the context is not ``[system?, user]``."""
    roles = [m.role for m in row.prompt]
    if roles not in (["user"], ["system", "user"]):
        return None
    flat: dict[str, Any] = {}
    if roles[0] == "system":
        flat["system"] = row.prompt[0].content
    flat.update(
        prompt=row.prompt[-1].content,
        chosen=row.chosen,
        rejected=row.rejected,
        provenance=row.provenance.model_dump(),
    )
    return flat


def conversational_dpo_row(row: DpoRow) -> dict[str, Any]:
    return {
        "prompt": [m.model_dump() for m in row.prompt],
        "chosen": [{"role": "assistant", "content": row.chosen}],
        "rejected": [{"role": "assistant", "content": row.rejected}],
        "provenance": row.provenance.model_dump(),
    }


def _read(path: Path, model: type[SftRow] | type[DpoRow], bad: BadLineLog) -> list[Any]:
    rows: list[Any] = []
    for line, row in read_rows(path, model, bad):
        if isinstance(row, SftRow) and row.messages[-1].role != "assistant":
            reason = "field 'messages': the last message must be the assistant's action"
            bad.add(BadLine(file=str(path), line=line, reason=reason))
            continue
        rows.append(row)
    return rows


class LengthCheck:
    """Renders rows with the target chat template: longest row, and rows the trainer would cut or mis-mask."""

    def __init__(self, counter: ChatTokenCounter, max_seq_length: int) -> None:
        self.counter = counter
        self.max_seq_length = max_seq_length
        self.longest = 0
        self.problems: list[str] = []

    def check(self, split: str, index: int, row: SftRow) -> None:
        messages = [m.model_dump() for m in row.messages]
        full = self.counter.render(messages)
        prompt = self.counter.render(messages[:-1], add_generation_prompt=True)
        tokens = self.counter.count(messages)
        self.longest = max(self.longest, tokens)
        where = f"{split}.jsonl row {index + 1} (episode {row.provenance.episode}, tick {row.provenance.tick_start})"
        if tokens > self.max_seq_length:
            self.problems.append(f"{where}: {tokens} tokens > max_seq_length {self.max_seq_length}")
        if not full.startswith(prompt):
            self.problems.append(f"{where}: the rendered prompt is not a prefix of the rendered row")


def lora_config(recipe: dict[str, Any], data_dir: Path, model: str | None) -> dict[str, Any]:
    sft = recipe["sft"]
    config: dict[str, Any] = {
        "train": True,
        "data": str(data_dir),
        "fine_tune_type": sft["fine_tune_type"],
        "seed": recipe.get("seed", 0),
        "num_layers": sft["num_layers"],
        "batch_size": sft["batch_size"],
        "iters": sft["iters"],
        "learning_rate": sft["learning_rate"],
        "steps_per_eval": sft["steps_per_eval"],
        "val_batches": sft["val_batches"],
        "max_seq_length": sft["max_seq_length"],
        "mask_prompt": sft["mask_prompt"],
        "lora_parameters": {"rank": sft["lora_rank"], "scale": sft["lora_scale"], "dropout": sft["lora_dropout"]},
    }
    if model:
        config["model"] = model
    return config


def run(ctx: StepContext) -> dict[str, Any]:
    params = load_params(ctx, PrepareParams)
    recipe_path = find_file(ctx, params.input, RECIPE_NAME)
    recipe_dir = recipe_path.parent
    try:
        recipe = json.loads(recipe_path.read_text(encoding="utf-8"))
        sft_params = recipe["sft"]
        batch_size = int(sft_params["batch_size"])
        max_seq_length = int(sft_params["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StepFailed(f"prepare-mlx-sft-data: {recipe_path}: not a usable recipe manifest: {exc}") from exc
    length: LengthCheck | None = None
    if params.tokenizer is not None:
        try:
            length = LengthCheck(ChatTokenCounter(ctx.resolve(params.tokenizer)), max_seq_length)
        except TokenizerUnavailable as exc:
            raise StepFailed(f"prepare-mlx-sft-data: target tokenizer: {exc}") from exc
    bad = BadLineLog()
    counts: dict[str, dict[str, int]] = {}
    skipped_multiturn: Counter[str] = Counter()
    files: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        sft_rows: list[SftRow] = _read(recipe_dir / SFT_DIR / f"{split}.jsonl", SftRow, bad)
        dpo_rows: list[DpoRow] = _read(recipe_dir / DPO_DIR / f"{split}.jsonl", DpoRow, bad)
        if length is not None:
            for index, row in enumerate(sft_rows):
                length.check(split, index, row)
        flat = [r for r in (flat_dpo_row(row) for row in dpo_rows) if r is not None]
        skipped_multiturn[split] = len(dpo_rows) - len(flat)
        outputs = {
            f"{split}.jsonl": [mlx_chat_row(r) for r in sft_rows],
            f"{DPO_DIR}/{split}.jsonl": flat,
            f"{CONVERSATIONAL_DIR}/{split}.jsonl": [conversational_dpo_row(r) for r in dpo_rows],
        }
        for name, rows in outputs.items():
            path = ctx.artifact(name)
            if not rows:
                # mlx_lm reads an existing file's first row to learn its format: an empty file is an error there.
                path.unlink(missing_ok=True)
                continue
            write_jsonl(path, rows)
            files[name] = {"rows": len(rows), "sha256": file_sha256(path)}
        counts[split] = {"sft": len(sft_rows), "dpo_flat": len(flat), "dpo_conversational": len(dpo_rows)}
    config = lora_config(recipe, ctx.artifacts_dir, params.model or recipe.get("base_model"))
    write_json(ctx.artifact(LORA_CONFIG_NAME), config)
    summary: dict[str, Any] = {
        "data_dir": str(ctx.artifacts_dir),
        "counts": counts,
        "dpo_flat_skipped_multiturn": dict(skipped_multiturn),
        "files": files,
        "lora_config": str(ctx.artifact(LORA_CONFIG_NAME)),
        "batch_size": batch_size,
        "max_seq_length": max_seq_length,
        "longest_row_tokens": length.longest if length is not None else None,
        "recipe": {"path": str(recipe_path), "sha256": file_sha256(recipe_path)},
    }
    summary.update(finish_bad_lines(ctx, bad))
    problems = list(length.problems) if length is not None else []
    problems += [
        f"{split}.jsonl has {counts[split]['sft']} rows, fewer than batch_size {batch_size}"
        for split in ("train", "valid")
        if counts[split]["sft"] < batch_size
    ]
    ctx.log(f"mlx data: {counts}")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... {len(problems) - 10} more" if len(problems) > 10 else "")
        raise StepFailed(f"prepare-mlx-sft-data: {shown}")
    return summary
