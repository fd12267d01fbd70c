"""Step ``guard-sft-split``: train/valid/test with no episode (or task) in two splits.

Rows of one episode share most of their context, so a row-level split would put near-copies of test rows in
train and make every post-training number a memory test. Rows are therefore grouped (by episode, or by task so
that no task is seen in training at all) and whole groups are assigned. The assignment is deterministic for a
seed: groups are ordered by size, ties broken by ``sha256(seed:key)``, and each goes to the split furthest below
its target. A split's target is its share of the trainable rows, but never less than the batch size, since the
trainer refuses a split smaller than one batch; if a split still ends up smaller, the step fails naming counts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.data.jsonl import BadLineLog, read_rows, write_json, write_jsonl
from pipeline.data.rows import TRAINABLE_LABELS, Example
from pipeline.data.step_io import StepParams, find_file, finish_bad_lines, load_params
from pipeline.jobs.context import StepContext, StepFailed

SPLITS: tuple[str, ...] = ("train", "valid", "test")
INPUT_NAME = "dataset.jsonl"
MANIFEST_NAME = "split_manifest.json"


class SplitRatios(StepParams):
    train: float = Field(default=0.8, gt=0)
    valid: float = Field(default=0.1, ge=0)
    test: float = Field(default=0.1, ge=0)

    def share(self, split: str) -> float:
        total = self.train + self.valid + self.test
        return float(getattr(self, split)) / total


class SplitParams(StepParams):
    input: str | list[str] | None = None
    """the guarded dataset (``dataset.jsonl`` or its folder); default: the step's declared inputs"""
    by: Literal["episode", "task"] = "episode"
    ratios: SplitRatios = Field(default_factory=SplitRatios)
    seed: int = 0
    batch_size: int = Field(default=4, ge=1, description="each used split needs at least this many SFT rows")

    @model_validator(mode="after")
    def _valid_used(self) -> SplitParams:
        if self.ratios.valid == 0:
            raise ValueError("field 'ratios.valid': must be > 0 (training evaluates on the valid split)")
        return self


def group_key(example: Example, by: str) -> str:
    if by == "task" and example.task_id:
        return f"task:{example.task_id}"
    return f"episode:{example.episode}"


def _order_key(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def _fill(weights: dict[str, int], targets: dict[str, float], seed: int, assignment: dict[str, str]) -> None:
    """Give each group (largest first, ties by seeded hash) to the split furthest below its target."""
    filled = dict.fromkeys(targets, 0)
    for key in sorted(weights, key=lambda k: (-weights[k], _order_key(seed, k))):
        split = max(targets, key=lambda s: (targets[s] - filled[s], s == "train"))
        assignment[key] = split
        filled[split] += weights[key]


def assign_groups(
    trainable: dict[str, int], rows: dict[str, int], ratios: SplitRatios, seed: int, minimum: int
) -> dict[str, str]:
    """Map every group key to a split; deterministic for the same counts, ratios and seed.

    Groups with trainable rows are spread by those rows (valid and test get at least ``minimum``); groups with
    none (only Reject rows) are spread by their row count, so that negative evidence lands in every split too.
    """
    used = [s for s in SPLITS if ratios.share(s) > 0]
    total = sum(trainable.values())
    targets = {s: max(ratios.share(s) * total, float(minimum)) for s in used if s != "train"}
    targets["train"] = max(total - sum(targets.values()), float(minimum))
    assignment: dict[str, str] = {}
    _fill({k: v for k, v in trainable.items() if v > 0}, targets, seed, assignment)
    rest = {k: rows[k] for k, v in trainable.items() if v == 0}
    rest_total = sum(rest.values())
    _fill(rest, {s: ratios.share(s) * rest_total for s in used}, seed, assignment)
    return assignment


def run(ctx: StepContext) -> dict[str, Any]:
    params = load_params(ctx, SplitParams)
    path = find_file(ctx, params.input, INPUT_NAME, any_name=True)
    bad = BadLineLog()
    rows = [example for _, example in read_rows(path, Example, bad)]
    weights: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    without_task = 0
    for example in rows:
        key = group_key(example, params.by)
        weights[key] += 1 if example.label in TRAINABLE_LABELS else 0
        sizes[key] += 1
        if params.by == "task" and not example.task_id:
            without_task += 1
    assignment = assign_groups(dict(weights), dict(sizes), params.ratios, params.seed, params.batch_size)
    by_split: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for example in rows:
        by_split[assignment[group_key(example, params.by)]].append(example)
    counts = {
        s: {
            "rows": len(by_split[s]),
            "trainable": sum(1 for e in by_split[s] if e.label in TRAINABLE_LABELS),
            "groups": sum(1 for v in assignment.values() if v == s),
        }
        for s in SPLITS
    }
    for split in SPLITS:
        write_jsonl(ctx.artifact(f"{split}.jsonl"), by_split[split])
    manifest = {
        "by": params.by,
        "seed": params.seed,
        "ratios": params.ratios.model_dump(),
        "batch_size": params.batch_size,
        "source": str(path),
        "counts": counts,
        "groups": {s: sorted(k for k, v in assignment.items() if v == s) for s in SPLITS},
    }
    write_json(ctx.artifact(MANIFEST_NAME), manifest)
    summary: dict[str, Any] = {
        "by": params.by,
        "seed": params.seed,
        "counts": counts,
        "groups": len(assignment),
        "rows_without_task_grouped_by_episode": without_task,
        "manifest": str(ctx.artifact(MANIFEST_NAME)),
    }
    summary.update(finish_bad_lines(ctx, bad))
    short = [
        f"{s} has {counts[s]['trainable']}"
        for s in SPLITS
        if params.ratios.share(s) > 0 and counts[s]["trainable"] < params.batch_size
    ]
    if short:
        detail = ", ".join(f"{s}={counts[s]['trainable']}" for s in SPLITS)
        raise StepFailed(
            f"guard-sft-split: {'; '.join(short)} trainable rows, fewer than batch_size {params.batch_size} "
            f"(trainable rows per split: {detail}; {len(assignment)} {params.by} group(s), "
            f"{sum(weights.values())} trainable rows in all): more episodes are needed, or a smaller batch_size"
        )
    ctx.log("split: " + ", ".join(f"{s}={counts[s]['rows']} rows/{counts[s]['groups']} groups" for s in SPLITS))
    return summary
