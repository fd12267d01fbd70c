"""Stage C end to end: a damaged dirty trace in, data that the real ``mlx_lm lora`` trains on out.

Each step runs in its own child process through ``pipeline.jobs.run_function`` with the ``module:function`` path a
config names, exactly as the engine runs it; then ``python -m mlx_lm lora`` trains a tiny Qwen3 for three
iterations on the prepared folder, as written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.data.token_length import ChatTokenCounter
from tests.test_data_support import ROOT, make_ctx, make_tiny_model, read_jsonl, standard_trace, trace_corpus

pytestmark = pytest.mark.slow

STEPS: tuple[tuple[str, str], ...] = (
    ("extract-thrashing-journal", "pipeline.data.extract_journal:run"),
    ("guard-sft-dataset", "pipeline.data.guard_dataset:run"),
    ("guard-sft-split", "pipeline.data.guard_split:run"),
    ("failure-recovery-dataset-stats", "pipeline.data.dataset_stats:run"),
    ("sft-dpo-recipe", "pipeline.data.sft_dpo_recipe:run"),
    ("prepare-mlx-sft-data", "pipeline.data.prepare_mlx:run"),
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny-qwen3", trace_corpus(standard_trace(episodes=4)))


def run_step(session: Path, step: str, function: str, params: dict[str, Any], inputs: list[Path]) -> dict[str, Any]:
    ctx = make_ctx(session, step, params, inputs)
    ctx_path = session / "run" / f"{step}.1.ctx.json"
    ctx_path.parent.mkdir(parents=True, exist_ok=True)
    ctx_path.write_text(ctx.model_dump_json())
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.jobs.run_function", str(ctx_path), function],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(ctx_path.with_name(f"{step}.1.result.json").read_text())
    assert proc.returncode == 0 and result["ok"], f"{step}: {result}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    summary: dict[str, Any] = json.loads((ctx.artifacts_dir / "summary.json").read_text())
    return summary


def test_dirty_trace_to_mlx_lm_lora(tmp_path: Path, tiny_model: Path) -> None:
    builder = standard_trace(episodes=4)
    trace = builder.write(tmp_path / "A" / "dirty_trace.jsonl", damage=True)
    session = tmp_path / "session"
    art = session / "artifacts" / "C"
    params: dict[str, dict[str, Any]] = {
        "extract-thrashing-journal": {},
        "guard-sft-dataset": {"tokenizer": str(tiny_model), "max_tokens": 512},
        "guard-sft-split": {"by": "episode", "seed": 1, "batch_size": 2},
        "failure-recovery-dataset-stats": {
            "min_failure_recovery_share": 0.5,
            "rejects": str(art / "guard-sft-dataset"),
        },
        "sft-dpo-recipe": {"sft": {"batch_size": 2, "max_seq_length": 512}, "dpo": {"batch_size": 2}},
        "prepare-mlx-sft-data": {"tokenizer": str(tiny_model), "model": str(tiny_model)},
    }
    inputs: dict[str, list[Path]] = {
        "extract-thrashing-journal": [trace],
        "guard-sft-dataset": [art / "extract-thrashing-journal" / "examples.jsonl"],
        "guard-sft-split": [art / "guard-sft-dataset"],
        "failure-recovery-dataset-stats": [art / "guard-sft-split" / f"{s}.jsonl" for s in ("train", "valid", "test")],
        "sft-dpo-recipe": [art / "guard-sft-split" / f"{s}.jsonl" for s in ("train", "valid", "test")],
        "prepare-mlx-sft-data": [art / "sft-dpo-recipe" / "recipe.json"],
    }
    summaries = {step: run_step(session, step, function, params[step], inputs[step]) for step, function in STEPS}

    extract = summaries["extract-thrashing-journal"]
    assert extract["bad_lines"] == 4 and (art / "extract-thrashing-journal" / "bad_lines.jsonl").exists()
    assert extract["examples"]["failure_recovery"] == 16  # one per recovered chain with an action
    assert extract["failure_recovery_pairing"] == {"recovering_context": 16, "failure_context": 0}
    guard = summaries["guard-sft-dataset"]
    assert guard["scrubbed"]["aws_access_key"] >= 1 and guard["scrubbed"]["email"] >= 1
    stats = summaries["failure-recovery-dataset-stats"]
    assert stats["gate"]["passed"] and stats["failure_recovery"] > stats["golden"]
    data = art / "prepare-mlx-sft-data"
    assert summaries["prepare-mlx-sft-data"]["counts"]["train"]["sft"] >= 2

    # Every SFT prompt is byte for byte a context the harness sent, and every target an action it emitted or
    # should have emitted (scrubbing aside: the one leaked key is redacted).
    contexts = {json.dumps(r["context"]) for r in builder.records if r.get("context")}
    rows = [
        r for s in ("train", "valid", "test") if (data / f"{s}.jsonl").exists() for r in read_jsonl(data / f"{s}.jsonl")
    ]
    unscrubbed = [r for r in rows if "[REDACTED:" not in json.dumps(r["messages"])]
    assert unscrubbed and all(json.dumps(r["messages"][:-1]) in contexts for r in unscrubbed)

    adapters = tmp_path / "adapters"
    command = [
        sys.executable, "-m", "mlx_lm", "lora",
        "--model", str(tiny_model),
        "--train",
        "--data", str(data),
        "--config", str(data / "lora_config.yaml"),
        "--iters", "3",
        "--batch-size", "2",
        "--num-layers", "2",
        "--steps-per-eval", "3",
        "--val-batches", "1",
        "--adapter-path", str(adapters),
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (adapters / "adapters.safetensors").stat().st_size > 0
    assert json.loads((adapters / "adapter_config.json").read_text())["mask_prompt"] is True

    from mlx_lm import generate, load

    model, tokenizer = load(str(tiny_model), adapter_path=str(adapters))
    prompt = tokenizer.apply_chat_template(rows[0]["messages"][:-1], add_generation_prompt=True)
    assert isinstance(generate(model, tokenizer, prompt=prompt, max_tokens=4), str)


def test_prompt_masking_lines_up_with_the_chat_template(tiny_model: Path) -> None:
    """mlx_lm masks the prompt by re-rendering ``messages[:-1]``; the counter must agree with its tokenizer."""
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    counter = ChatTokenCounter(tiny_model)
    record = next(r for r in standard_trace().records if r.get("context"))
    messages = [*record["context"], {"role": "assistant", "content": '{"act":"list","arg":"src"}'}]
    full = tokenizer.apply_chat_template(messages, return_dict=False)
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, return_dict=False)
    assert counter.count(messages) == len(full)
    assert counter.count(messages[:-1], add_generation_prompt=True) == len(prompt)
    assert full[: len(prompt)] == prompt
