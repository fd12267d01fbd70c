"""``failure-recovery-dataset-stats``, ``sft-dpo-recipe`` and ``prepare-mlx-sft-data`` on hand-made splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.bench.prompt import build_repair_messages
from pipeline.data import dataset_stats, prepare_mlx, sft_dpo_recipe
from pipeline.jobs.context import StepFailed
from tests.test_data_guards import context, example, write_rows
from tests.test_data_support import make_ctx, make_tokenizer, read_jsonl, standard_trace, trace_corpus

SPLITS = ("train", "valid", "test")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tok"), trace_corpus(standard_trace(episodes=2)))


def write_splits(folder: Path, splits: dict[str, list[dict[str, Any]]]) -> Path:
    for name, rows in splits.items():
        write_rows(folder / f"{name}.jsonl", rows)
    return folder


def rows(start: int, recovery: int, golden: int, reject: int = 0) -> list[dict[str, Any]]:
    out = [example(start + i) for i in range(recovery)]
    out += [example(start + 100 + i, label="golden") for i in range(golden)]
    out += [example(start + 200 + i, label="reject") for i in range(reject)]
    return out


# -- stats -----------------------------------------------------------------------------------------------------
def run_stats(tmp_path: Path, splits: dict[str, list[dict[str, Any]]], **params: Any) -> tuple[Any, Path]:
    folder = write_splits(tmp_path / "split", splits)
    ctx = make_ctx(tmp_path / "session", "failure-recovery-dataset-stats", params, inputs=[folder])
    try:
        return dataset_stats.run(ctx), ctx.artifacts_dir
    except StepFailed as exc:
        return exc, ctx.artifacts_dir


def test_stats_count_every_kind_and_pass_when_recovery_dominates(tmp_path: Path) -> None:
    rejects = write_rows(
        tmp_path / "guard" / "rejects.jsonl",
        [{"code": "duplicate", "reason": "x"}, {"code": "too_long", "reason": "y"}, {"code": "duplicate"}],
    )
    splits = {"train": rows(0, 6, 3, 2), "valid": rows(10, 2, 1), "test": rows(20, 2, 0, 1)}
    summary, out = run_stats(tmp_path, splits, rejects=str(rejects.parent))
    assert isinstance(summary, dict)
    assert (summary["golden"], summary["failure_recovery"], summary["reject"]) == (4, 10, 6)
    assert summary["reject_breakdown"] == {"unrecovered_failures": 3, "guard_rejected": {"duplicate": 2, "too_long": 1}}
    assert summary["per_split"]["train"] == {"golden": 3, "failure_recovery": 6, "reject": 2}
    assert summary["ratios"]["failure_recovery_of_trainable"] == round(10 / 14, 4)
    assert summary["ratios"]["failure_recovery"] == 0.5 and summary["ratios"]["reject"] == 0.3
    assert summary["gate"]["passed"] is True
    assert json.loads((out / "stats.json").read_text())["gate"]["passed"] is True


def test_stats_gate_fails_when_recovery_is_not_dominant(tmp_path: Path) -> None:
    splits = {"train": rows(0, 3, 5), "valid": rows(10, 1, 1), "test": rows(20, 1, 1)}
    error, out = run_stats(tmp_path, splits, min_failure_recovery_share=0.5)
    assert isinstance(error, StepFailed)
    assert "failure-recovery share 0.417 of trainable examples is below min_failure_recovery_share 0.5" in str(error)
    assert "golden=7, failure_recovery=5, reject=0" in str(error)
    evidence = json.loads((out / "stats.json").read_text())  # written before the gate fails
    assert evidence["gate"]["passed"] is False and evidence["failure_recovery"] == 5


def test_stats_share_of_all_and_reject_ceiling(tmp_path: Path) -> None:
    splits = {"train": rows(0, 4, 1, 4), "valid": rows(10, 1, 0), "test": rows(20, 1, 0)}
    summary, _ = run_stats(tmp_path / "a", splits, min_failure_recovery_share=0.5)
    assert isinstance(summary, dict)  # 6 of 7 trainable
    error, _ = run_stats(tmp_path / "b", splits, min_failure_recovery_share=0.6, share_basis="all")
    assert isinstance(error, StepFailed) and "of all examples" in str(error)  # 6 of 11
    error, _ = run_stats(tmp_path / "c", splits, max_reject_share=0.2)
    assert isinstance(error, StepFailed) and "reject share 0.364 is above max_reject_share 0.2" in str(error)


# -- recipe ----------------------------------------------------------------------------------------------------
def run_recipe(tmp_path: Path, splits: dict[str, list[dict[str, Any]]], **params: Any) -> tuple[dict[str, Any], Path]:
    folder = write_splits(tmp_path / "split", splits)
    ctx = make_ctx(tmp_path / "session", "sft-dpo-recipe", params, inputs=[folder])
    return sft_dpo_recipe.run(ctx), ctx.artifacts_dir


def test_recipe_builds_sft_rows_and_dpo_pairs_from_recoveries(tmp_path: Path) -> None:
    same = example(50, completion='{"act":"check","arg":"c.sh"}')  # flaky: the same action failed then worked
    splits = {"train": [*rows(0, 4, 10, 2), same], "valid": rows(10, 2, 2), "test": rows(20, 2, 0)}
    params = {"max_golden_share": 0.5, "sft": {"batch_size": 2}, "dpo": {"batch_size": 2}, "base_model": "tiny"}
    summary, out = run_recipe(tmp_path, splits, **params)

    train = read_jsonl(out / "sft" / "train.jsonl")
    labels = [r["label"] for r in train]
    assert labels.count("failure_recovery") == 5 and labels.count("golden") == 5  # capped at half
    assert summary["mixture"]["train"]["sft"]["golden_available"] == 10
    assert summary["mixture"]["train"]["sft"]["failure_recovery_pairing"] == {"unmarked": 5}  # hand-made rows
    assert summary["mixture"]["valid"]["sft"]["golden"] == 2  # valid keeps the real mix
    first = train[0]
    source = example(0)
    assert first["messages"][:-1] == source["messages"]
    assert first["messages"][-1] == {"role": "assistant", "content": source["completion"]}
    assert first["provenance"] == source["provenance"]

    pairs = read_jsonl(out / "dpo" / "train.jsonl")
    assert len(pairs) == 4 and summary["mixture"]["train"]["dpo"]["identical_sides_skipped"] == 1
    assert pairs[0]["prompt"] == source["messages"]
    assert (pairs[0]["chosen"], pairs[0]["rejected"]) == (source["completion"], source["rejected"])
    assert all(p["provenance"]["sha256"] == "ab" * 32 for p in pairs)

    manifest = json.loads((out / "recipe.json").read_text())
    assert manifest["recipe"] == "sft-dpo-grit-recipe" and manifest["stages"] == ["sft", "dpo"]
    assert manifest["sft"]["batch_size"] == 2 and manifest["dpo"]["beta"] == 0.1
    assert manifest["base_model"] == "tiny"
    assert manifest["outputs"]["sft/train"]["rows"] == 10
    assert len(manifest["inputs"]["train"]["sha256"]) == 64


def test_recipe_is_deterministic_and_seeded(tmp_path: Path) -> None:
    splits = {"train": rows(0, 2, 12), "valid": rows(10, 2, 0), "test": rows(20, 2, 0)}
    params = {"max_golden_share": 0.5, "sft": {"batch_size": 2}}
    _, a = run_recipe(tmp_path / "a", splits, seed=1, **params)
    _, b = run_recipe(tmp_path / "b", splits, seed=1, **params)
    assert (a / "sft" / "train.jsonl").read_bytes() == (b / "sft" / "train.jsonl").read_bytes()
    picks = set()
    for seed in range(5):
        _, c = run_recipe(tmp_path / f"s{seed}", splits, seed=seed, **params)
        picks.add(tuple(r["id"] for r in read_jsonl(c / "sft" / "train.jsonl") if r["label"] == "golden"))
    assert len(picks) > 1


def test_recipe_without_enough_pairs_drops_the_dpo_stage_and_fails_without_a_batch(tmp_path: Path) -> None:
    splits = {"train": rows(0, 2, 0), "valid": rows(10, 2, 0), "test": rows(20, 0, 1)}
    summary, out = run_recipe(tmp_path / "a", splits, sft={"batch_size": 2}, dpo={"batch_size": 4})
    manifest = json.loads((out / "recipe.json").read_text())
    assert summary["stages"] == ["sft"] and manifest["dpo"]["enabled"] is False
    assert manifest["dpo"]["reason"] == "2 train pairs < dpo.batch_size 4"
    with pytest.raises(StepFailed, match=r"train=2, valid=2; each needs at least sft.batch_size 3"):
        run_recipe(tmp_path / "b", splits, sft={"batch_size": 3})


# -- prepare ---------------------------------------------------------------------------------------------------
def prepare(
    tmp_path: Path, splits: dict[str, list[dict[str, Any]]], tokenizer: Path | None = None, **recipe: Any
) -> tuple[dict[str, Any], Path]:
    _, recipe_dir = run_recipe(tmp_path, splits, **recipe)
    params = {"tokenizer": str(tokenizer)} if tokenizer else {}
    ctx = make_ctx(tmp_path / "session", "prepare-mlx-sft-data", params, inputs=[recipe_dir])
    return prepare_mlx.run(ctx), ctx.artifacts_dir


def test_prepare_writes_every_trainer_format(tmp_path: Path, tokenizer_dir: Path) -> None:
    repair = build_repair_messages(context(60), "{act: read", "not JSON")
    multi = example(60, messages=repair)
    splits = {"train": [*rows(0, 3, 1), multi], "valid": rows(10, 2, 0), "test": rows(20, 0, 0, 1)}
    summary, out = prepare(tmp_path, splits, tokenizer_dir, sft={"batch_size": 2, "max_seq_length": 512})

    train = read_jsonl(out / "train.jsonl")
    assert set(train[0]) == {"messages", "provenance"}
    assert train[0]["messages"][-1]["role"] == "assistant"
    assert summary["counts"]["train"] == {"sft": 5, "dpo_flat": 3, "dpo_conversational": 4}
    assert summary["dpo_flat_skipped_multiturn"]["train"] == 1
    assert not (out / "test.jsonl").exists()  # no rows: no file (mlx_lm fails on an empty one)

    flat = read_jsonl(out / "dpo" / "train.jsonl")
    source = example(0)
    assert flat[0]["system"] == source["messages"][0]["content"]
    assert flat[0]["prompt"] == source["messages"][1]["content"]
    assert (flat[0]["chosen"], flat[0]["rejected"]) == (source["completion"], source["rejected"])
    conv = read_jsonl(out / "dpo_conversational" / "train.jsonl")
    assert conv[-1]["prompt"] == repair
    assert conv[-1]["chosen"] == [{"role": "assistant", "content": multi["completion"]}]
    assert all("provenance" in row for row in [*train, *flat, *conv])

    config = json.loads((out / "lora_config.yaml").read_text())
    assert config["data"] == str(out) and config["batch_size"] == 2 and config["mask_prompt"] is True
    assert config["lora_parameters"] == {"rank": 8, "scale": 20.0, "dropout": 0.0}
    assert 0 < summary["longest_row_tokens"] <= 512


def test_prepare_fails_on_rows_the_trainer_would_cut(tmp_path: Path, tokenizer_dir: Path) -> None:
    splits = {"train": rows(0, 3, 0), "valid": rows(10, 2, 0), "test": rows(20, 2, 0)}
    with pytest.raises(StepFailed, match=r"train.jsonl row 1 \(episode ep-0, tick 1\): \d+ tokens > max_seq_length 40"):
        prepare(tmp_path, splits, tokenizer_dir, sft={"batch_size": 2, "max_seq_length": 40})
