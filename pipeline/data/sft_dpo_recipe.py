"""Step ``sft-dpo-recipe`` (plan: ``bench:sft-dpo-grit-recipe``): SFT rows, DPO pairs and the recipe manifest.

SFT teaches the action to take: a failure-recovery row is the context the recovering actor (often the reflex
expert) was shown plus the action it took there, so the model learns the right action in the exact state where it
was right (traces without that context fall back to the failed tick's context, see ``pipeline.data.examples``);
a golden row is a clean step. DPO teaches the contrast: chosen = the recovering action, rejected = what the model
emitted at its last failed tick before the recovery. A pair whose two sides are the same text (a flaky tool: the
same action failed, then worked) has nothing to prefer and is left out.

Golden rows are capped in the train split at ``max_golden_share`` of the SFT rows (picked deterministically by
seed) so that recovery stays dominant; valid and test keep every row so that evaluation sees the real mix.
``recipe.json`` records the mixture, the hyperparameters of both stages and the sha256 of every file.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from typing import Any, Literal

from pydantic import Field

from pipeline.data.guard_dataset import normalize_text
from pipeline.data.guard_split import SPLITS
from pipeline.data.jsonl import BadLineLog, file_sha256, read_rows, write_json, write_jsonl
from pipeline.data.rows import Example
from pipeline.data.step_io import StepParams, find_file, finish_bad_lines, load_params
from pipeline.jobs.context import StepContext, StepFailed

RECIPE_NAME = "recipe.json"
SFT_DIR = "sft"
DPO_DIR = "dpo"
RECIPE_ID = "sft-dpo-grit-recipe"


class SftHyperparameters(StepParams):
    fine_tune_type: Literal["lora", "dora", "full"] = "lora"
    iters: int = Field(default=300, gt=0)
    batch_size: int = Field(default=4, gt=0)
    learning_rate: float = Field(default=1e-4, gt=0)
    num_layers: int = Field(default=-1, description="layers to adapt; -1 for all")
    lora_rank: int = Field(default=8, gt=0)
    lora_scale: float = Field(default=20.0, gt=0)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    max_seq_length: int = Field(default=2048, gt=0)
    mask_prompt: bool = Field(default=True, description="train on the action only, not on the context")
    steps_per_eval: int = Field(default=100, gt=0)
    val_batches: int = Field(default=25, description="-1 for the whole valid split")


class DpoHyperparameters(StepParams):
    beta: float = Field(default=0.1, gt=0)
    loss_type: Literal["sigmoid", "hinge", "ipo", "dpop"] = "sigmoid"
    iters: int = Field(default=100, gt=0)
    batch_size: int = Field(default=2, gt=0)
    learning_rate: float = Field(default=5e-6, gt=0)


class RecipeParams(StepParams):
    input: str | list[str] | None = None
    """the split folder (``train.jsonl``, ``valid.jsonl``, ``test.jsonl``); default: the step's declared inputs"""
    base_model: str | None = None
    """the model to fine-tune (name or path), recorded in the manifest for the training stage"""
    max_golden_share: float = Field(default=0.5, ge=0, le=1)
    seed: int = 0
    sft: SftHyperparameters = Field(default_factory=SftHyperparameters)
    dpo: DpoHyperparameters = Field(default_factory=DpoHyperparameters)


def sft_row(example: Example) -> dict[str, Any]:
    assert example.completion is not None
    return {
        "id": example.id,
        "label": example.label,
        "messages": [*example.prompt_messages(), {"role": "assistant", "content": example.completion}],
        "failure_class": example.failure_class,
        "provenance": example.provenance.model_dump(mode="json"),
    }


def dpo_row(example: Example) -> dict[str, Any]:
    assert example.completion is not None and example.rejected is not None
    return {
        "id": example.id,
        "prompt": example.prompt_messages(),
        "chosen": example.completion,
        "rejected": example.rejected,
        "failure_class": example.failure_class,
        "mechanism": example.mechanism,
        "provenance": example.provenance.model_dump(mode="json"),
    }


def golden_cap(recovery_rows: int, max_share: float) -> int | None:
    """Most golden rows allowed beside ``recovery_rows`` so golden is at most ``max_share`` of the SFT rows."""
    if max_share >= 1:
        return None
    return math.floor(max_share * recovery_rows / (1 - max_share) + 1e-9)


def _seeded(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def build_split(
    examples: list[Example], cap_golden: bool, params: RecipeParams
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """SFT rows and DPO pairs of one split, and what went into them."""
    recovery = [e for e in examples if e.label == "failure_recovery"]
    golden = [e for e in examples if e.label == "golden"]
    cap = golden_cap(len(recovery), params.max_golden_share) if cap_golden else None
    if cap is not None and len(golden) > cap:
        keep = {e.id for e in sorted(golden, key=lambda e: _seeded(params.seed, e.id))[:cap]}
        golden = [e for e in golden if e.id in keep]
    chosen_ids = {e.id for e in recovery} | {e.id for e in golden}
    sft: list[dict[str, Any]] = []
    seen: set[tuple[str, ...]] = set()
    duplicates = 0
    for example in examples:
        if example.id not in chosen_ids:
            continue
        key = (*(normalize_text(m.content) for m in example.messages), normalize_text(example.completion or ""))
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        sft.append(sft_row(example))
    dpo: list[dict[str, Any]] = []
    identical = 0
    for example in recovery:
        if normalize_text(example.completion or "") == normalize_text(example.rejected or ""):
            identical += 1
            continue
        dpo.append(dpo_row(example))
    labels = Counter(row["label"] for row in sft)
    pairings = Counter(
        str(row["provenance"].get("pairing") or "unmarked") for row in sft if row["label"] == "failure_recovery"
    )
    mix = {
        "sft": {
            "failure_recovery": labels["failure_recovery"],
            "failure_recovery_pairing": dict(pairings),
            "golden": labels["golden"],
            "golden_available": sum(1 for e in examples if e.label == "golden"),
            "golden_cap": cap,
            "duplicates_dropped": duplicates,
        },
        "dpo": {"pairs": len(dpo), "identical_sides_skipped": identical},
        "reject_rows_not_used": sum(1 for e in examples if e.label == "reject"),
    }
    return sft, dpo, mix


def run(ctx: StepContext) -> dict[str, Any]:
    params = load_params(ctx, RecipeParams)
    bad = BadLineLog()
    mixture: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for split in SPLITS:
        path = find_file(ctx, params.input, f"{split}.jsonl")
        inputs[split] = {"path": str(path), "sha256": file_sha256(path)}
        examples = [e for _, e in read_rows(path, Example, bad)]
        sft, dpo, mix = build_split(examples, split == "train", params)
        mixture[split] = mix
        for kind, rows in ((SFT_DIR, sft), (DPO_DIR, dpo)):
            out = ctx.artifact(f"{kind}/{split}.jsonl")
            write_jsonl(out, rows)
            outputs[f"{kind}/{split}"] = {"path": str(out), "rows": len(rows), "sha256": file_sha256(out)}
    sft_train = mixture["train"]["sft"]["failure_recovery"] + mixture["train"]["sft"]["golden"]
    sft_valid = mixture["valid"]["sft"]["failure_recovery"] + mixture["valid"]["sft"]["golden"]
    dpo_train = mixture["train"]["dpo"]["pairs"]
    dpo_enabled = dpo_train >= params.dpo.batch_size
    manifest = {
        "recipe": RECIPE_ID,
        "base_model": params.base_model,
        "seed": params.seed,
        "stages": ["sft", "dpo"] if dpo_enabled else ["sft"],
        "mixture": mixture,
        "max_golden_share": params.max_golden_share,
        "sft": params.sft.model_dump(),
        "dpo": {
            **params.dpo.model_dump(),
            "enabled": dpo_enabled,
            "reason": None if dpo_enabled else f"{dpo_train} train pairs < dpo.batch_size {params.dpo.batch_size}",
        },
        "inputs": inputs,
        "outputs": outputs,
    }
    write_json(ctx.artifact(RECIPE_NAME), manifest)
    summary: dict[str, Any] = {
        "recipe": str(ctx.artifact(RECIPE_NAME)),
        "stages": manifest["stages"],
        "sft_rows": {s: mixture[s]["sft"]["failure_recovery"] + mixture[s]["sft"]["golden"] for s in SPLITS},
        "dpo_pairs": {s: mixture[s]["dpo"]["pairs"] for s in SPLITS},
        "mixture": mixture,
    }
    summary.update(finish_bad_lines(ctx, bad))
    ctx.log(f"recipe: SFT rows {summary['sft_rows']}, DPO pairs {summary['dpo_pairs']}, stages {manifest['stages']}")
    if min(sft_train, sft_valid) < params.sft.batch_size:
        raise StepFailed(
            f"sft-dpo-recipe: SFT rows train={sft_train}, valid={sft_valid}; each needs at least "
            f"sft.batch_size {params.sft.batch_size}"
        )
    return summary
