"""Step ``failure-recovery-dataset-stats``: what the training feed is made of, and the dominance gate.

The point of Stage C is to teach recovery. A feed dominated by easy golden steps would train a model that is
better at what it already does and no better at getting out of trouble, so the step fails when the
failure-recovery share is below ``min_failure_recovery_share``. The share is taken over the trainable rows
(golden + failure-recovery) by default, or over every example (``share_basis = "all"``), where Reject counts both
the unrecovered failures kept as negative evidence and the rows the guard threw out. ``stats.json`` is written
before the gate is judged, so a failed gate still leaves its evidence.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import Field

from pipeline.data.guard_dataset import REJECTS_NAME
from pipeline.data.guard_split import SPLITS
from pipeline.data.jsonl import BadLineLog, read_rows, write_json
from pipeline.data.rows import LABELS, Example
from pipeline.data.step_io import StepParams, find_file, finish_bad_lines, load_params
from pipeline.jobs.context import StepContext, StepFailed
from pipeline.traces.reader import good_records

STATS_NAME = "stats.json"


class StatsParams(StepParams):
    input: str | list[str] | None = None
    """the split folder (``train.jsonl``, ``valid.jsonl``, ``test.jsonl``); default: the step's declared inputs"""
    rejects: str | None = None
    """the guard's ``rejects.jsonl`` (or its folder), counted as Reject; optional"""
    min_failure_recovery_share: float = Field(default=0.5, ge=0, le=1)
    share_basis: Literal["trainable", "all"] = "trainable"
    max_reject_share: float | None = Field(default=None, ge=0, le=1)
    """optional second gate: the Reject share of all examples may not exceed this"""


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def count_rejects(ctx: StepContext, configured: str | None, bad: BadLineLog) -> Counter[str]:
    """Rows the guard rejected, by reason code."""
    if configured is None:
        return Counter()
    path = find_file(ctx, configured, REJECTS_NAME, any_name=True)
    reasons: Counter[str] = Counter()
    for _, obj in good_records(path, bad.add):
        code = obj.get("code")
        reasons[code if isinstance(code, str) else "unknown"] += 1
    return reasons


def run(ctx: StepContext) -> dict[str, Any]:
    params = load_params(ctx, StatsParams)
    bad = BadLineLog()
    per_split: dict[str, dict[str, int]] = {}
    by_class: Counter[str] = Counter()
    totals: Counter[str] = Counter({label: 0 for label in LABELS})
    for split in SPLITS:
        path = find_file(ctx, params.input, f"{split}.jsonl")
        labels: Counter[str] = Counter({label: 0 for label in LABELS})
        for _, example in read_rows(path, Example, bad):
            labels[example.label] += 1
            if example.label == "failure_recovery":
                by_class[example.failure_class or "unknown"] += 1
        per_split[split] = dict(labels)
        totals.update(labels)
    guard_rejects = count_rejects(ctx, params.rejects, bad)
    golden, recovery = totals["golden"], totals["failure_recovery"]
    reject = totals["reject"] + sum(guard_rejects.values())
    trainable = golden + recovery
    everything = trainable + reject
    gate_share = _share(recovery, trainable if params.share_basis == "trainable" else everything)
    reject_share = _share(reject, everything)
    summary: dict[str, Any] = {
        "golden": golden,
        "failure_recovery": recovery,
        "reject": reject,
        "reject_breakdown": {"unrecovered_failures": totals["reject"], "guard_rejected": dict(guard_rejects)},
        "per_split": per_split,
        "failure_recovery_by_class": dict(by_class),
        "ratios": {
            "golden": _share(golden, everything),
            "failure_recovery": _share(recovery, everything),
            "reject": reject_share,
            "failure_recovery_of_trainable": _share(recovery, trainable),
            "failure_recovery_per_golden": round(recovery / golden, 4) if golden else None,
        },
        "gate": {
            "share_basis": params.share_basis,
            "failure_recovery_share": gate_share,
            "min_failure_recovery_share": params.min_failure_recovery_share,
            "reject_share": reject_share,
            "max_reject_share": params.max_reject_share,
        },
    }
    summary.update(finish_bad_lines(ctx, bad))
    failures: list[str] = []
    if gate_share is None:
        failures.append("no trainable examples at all")
    elif gate_share < params.min_failure_recovery_share:
        failures.append(
            f"failure-recovery share {gate_share:.3f} of {params.share_basis} examples is below "
            f"min_failure_recovery_share {params.min_failure_recovery_share}"
        )
    if params.max_reject_share is not None and reject_share is not None and reject_share > params.max_reject_share:
        failures.append(f"reject share {reject_share:.3f} is above max_reject_share {params.max_reject_share}")
    summary["gate"]["passed"] = not failures
    summary["gate"]["reasons"] = failures
    write_json(ctx.artifact(STATS_NAME), summary)
    counts = f"golden={golden}, failure_recovery={recovery}, reject={reject}"
    ctx.log(f"dataset stats: {counts}; failure-recovery share {gate_share} ({params.share_basis})")
    if failures:
        raise StepFailed(f"failure-recovery-dataset-stats: {'; '.join(failures)} ({counts})")
    return summary
