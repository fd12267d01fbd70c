"""The mlx_train step for real: a tiny Qwen3 model fine-tuned by mlx_lm in the step's own child process.

Each run goes through ``python -m pipeline.jobs.run_function`` exactly as the engine starts it, and the progress
contract is read the way the engine reads it: stdout lines that start with ``EVENT_PREFIX``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.jobs.context import EVENT_PREFIX, StepContext, StepFailed
from pipeline.models.tiny import init_tiny

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("read", "write", "run", "grep")


# -- fixtures: the project's tiny qwen3 model and chat data ----------------------------------------------------
def task(i: int) -> str:
    return f"task {i}: the check in src/mod{i % 5}.py fails"


def action(i: int) -> dict[str, str]:
    return {"tool": TOOLS[i % len(TOOLS)], "path": f"src/mod{i % 5}.py"}


def chat_row(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "answer with one JSON action"},
            {"role": "user", "content": task(i)},
            {"role": "assistant", "content": json.dumps(action(i))},
        ]
    }


def make_chat_data(out: Path, n_train: int = 32, n_valid: int = 8, n_test: int = 8, bad_line: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    for name, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        lines = [json.dumps(chat_row(rng.randrange(1000))) for _ in range(n)]
        if bad_line and name == "train":
            lines.insert(3, '{"messages": [{"role": "user", "content": "no answer"}]}')
            lines.insert(5, "{not json")
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return out


def make_tiny_model(out: Path, seed: int = 0) -> Path:
    """``phasef model init-tiny``: a random-init Qwen3 (hidden 64, 2 blocks) with the workload's tokenizer."""
    init_tiny(out, seed=seed)
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny-qwen3")


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_chat_data(tmp_path_factory.mktemp("data") / "mlx", bad_line=True)


# -- running the step the way the engine does --------------------------------------------------------------
def write_ctx(session: Path, params: dict[str, Any], attempt: int = 1, step: str = "train") -> Path:
    artifacts = session / "artifacts" / "D" / step
    ctx = StepContext(
        session_id="s1",
        session_dir=session,
        project_dir=ROOT,
        stage="D",
        step=step,
        kind="mlx_train",
        attempt=attempt,
        artifacts_dir=artifacts,
        params=params,
    )
    path = session / "run" / f"{step}.{attempt}.ctx.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ctx.model_dump_json())
    return path


def start_step(ctx_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.jobs.run_function", str(ctx_path), "pipeline.train.runner:run"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def parse(lines: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    events = [json.loads(x[len(EVENT_PREFIX) :]) for x in lines if x.startswith(EVENT_PREFIX)]
    logs = [x for x in lines if not x.startswith(EVENT_PREFIX)]
    return events, logs


def run_step(ctx_path: Path, timeout: float = 300) -> tuple[int, list[dict[str, Any]], list[str], dict[str, Any]]:
    proc = start_step(ctx_path)
    out, _ = proc.communicate(timeout=timeout)
    events, logs = parse(out.splitlines())
    result = json.loads(ctx_path.with_name(ctx_path.name.replace(".ctx.json", ".result.json")).read_text())
    return proc.returncode, events, logs, result


def read_until(proc: subprocess.Popen[str], predicate: Any, timeout: float = 240) -> list[str]:
    """Read stdout lines until an event satisfies ``predicate`` (the process keeps running)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("the step ended early:\n" + "".join(lines[-30:]))
        lines.append(line.rstrip("\n"))
        if line.startswith(EVENT_PREFIX) and predicate(json.loads(line[len(EVENT_PREFIX) :])):
            return lines
    raise AssertionError("no matching event in time")


def base_params(model: Path, data: Path, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": str(model),
        "data": str(data),
        "batch_size": 4,
        "learning_rate": 2e-3,
        "steps_per_report": 2,
        "steps_per_eval": 6,
        "val_batches": 2,
        "test_batches": 2,
        "max_seq_length": 128,
    }
    params.update(extra)
    return params


def of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


# -- tests ----------------------------------------------------------------------------------------------------
def test_lora_run_streams_progress_and_leaves_a_servable_adapter(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    ctx_path = write_ctx(tmp_path, base_params(tiny_model, chat_data, iters=12, save_every=4))
    code, events, logs, result = run_step(ctx_path)
    assert code == 0, "\n".join(logs[-40:])
    assert result["ok"] is True

    data = of(events, "data")[0]
    assert data["rows"] == {"train": 32, "valid": 8, "test": 8} and data["bad_rows"] == 2
    bad_logged = [x for x in logs if "skipped bad training row" in x]
    assert any("train.jsonl:4" in x and "assistant" in x for x in bad_logged), bad_logged
    assert any("train.jsonl:6" in x and "invalid JSON" in x for x in bad_logged), bad_logged
    assert not any("\x1b[" in x for x in logs), "terminal escape codes leaked into the step log"

    start = of(events, "train_start")[0]
    assert start["start_step"] == 0 and start["total_steps"] == 12
    assert 0 < start["trainable_params"] < start["total_params"]

    train = of(events, "train")
    assert [e["step"] for e in train] == [2, 4, 6, 8, 10, 12]
    for e in train:
        assert e["train_loss"] > 0 and e["tokens_per_s"] > 0 and e["learning_rate"] == pytest.approx(2e-3)
        assert e["peak_memory_gb"] is not None and e["total_steps"] == 12
    vals = [(e["val_step"], e["val_loss"]) for e in train if e["val_loss"] is not None]
    assert [s for s, _ in vals] == [0, 5, 11]  # before step 1, before step 6, before the last step
    assert vals[-1][1] < vals[0][1], "validation loss did not fall"

    assert [e["step"] for e in of(events, "checkpoint")] == [4, 8, 12]
    adapters = tmp_path / "artifacts" / "D" / "train" / "adapters"
    names = sorted(p.name for p in adapters.iterdir())
    assert names == [
        "0000004_adapters.safetensors",
        "0000004_optimizer.safetensors",
        "0000008_adapters.safetensors",
        "0000008_optimizer.safetensors",
        "0000012_adapters.safetensors",
        "0000012_optimizer.safetensors",
        "adapter_config.json",
        "adapters.safetensors",
    ]
    summary = result["summary"]
    assert summary["steps"] == 12 and summary["resumed_from"] is None and summary["test_loss"] > 0
    assert summary["final_val_loss"] < summary["first_val_loss"]
    done = of(events, "train_done")[0]
    assert done["step"] == 12 and done["test_loss"] == pytest.approx(summary["test_loss"])

    # the adapter folder is what mlx_lm.server --adapter-path loads
    from mlx_lm.utils import load

    model, _ = load(str(tiny_model), adapter_path=str(adapters))
    assert any("lora_a" in name for name, _ in __import__("mlx.utils").utils.tree_flatten(model.parameters()))


def test_sigkill_mid_run_then_retry_resumes_from_the_newest_checkpoint(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    params = base_params(tiny_model, chat_data, iters=40, save_every=5, steps_per_eval=1000, test_batches=0)
    proc = start_step(write_ctx(tmp_path, params, attempt=1))
    try:
        read_until(proc, lambda e: e["event"] == "checkpoint" and e["step"] >= 10)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    adapters = tmp_path / "artifacts" / "D" / "train" / "adapters"
    saved = sorted(int(p.name[:7]) for p in adapters.glob("*_adapters.safetensors"))
    assert saved and saved[-1] >= 10 and saved[-1] < 40
    newest = saved[-1]

    code, events, logs, result = run_step(write_ctx(tmp_path, params, attempt=2))
    assert code == 0, "\n".join(logs[-40:])
    resume = of(events, "resume")
    assert len(resume) == 1 and resume[0]["step"] == newest and resume[0]["optimizer_state"] is True
    assert of(events, "train_start")[0]["start_step"] == newest
    steps = [e["step"] for e in of(events, "train")]
    assert steps[0] == newest + 2 and steps[-1] == 40, steps
    assert result["summary"]["resumed_from"] == newest and result["summary"]["steps_this_attempt"] == 40 - newest


def test_a_resumed_run_ends_where_an_uninterrupted_run_ends(tiny_model: Path, chat_data: Path, tmp_path: Path) -> None:
    """Optimizer state and data order are restored, so stopping at step 6 and resuming changes nothing."""
    import mlx.core as mx

    common = {"save_every": 3, "steps_per_eval": 4, "test_batches": 0}
    whole = tmp_path / "whole"
    code, _, logs, _ = run_step(write_ctx(whole, base_params(tiny_model, chat_data, iters=10, **common)))
    assert code == 0, "\n".join(logs[-40:])
    split = tmp_path / "split"
    code, _, logs, _ = run_step(write_ctx(split, base_params(tiny_model, chat_data, iters=6, **common), attempt=1))
    assert code == 0, "\n".join(logs[-40:])
    code, events, logs, _ = run_step(write_ctx(split, base_params(tiny_model, chat_data, iters=10, **common), 2))
    assert code == 0, "\n".join(logs[-40:])
    assert of(events, "resume")[0]["step"] == 6

    def final(session: Path) -> dict[str, Any]:
        loaded = mx.load(str(session / "artifacts" / "D" / "train" / "adapters" / "adapters.safetensors"))
        assert isinstance(loaded, dict)
        return loaded

    a, b = final(whole), final(split)
    assert a.keys() == b.keys()
    for name in a:
        assert mx.allclose(a[name], b[name], atol=1e-5).item(), name


def test_sigterm_saves_a_checkpoint_and_ends_the_attempt_as_cancelled(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    params = base_params(tiny_model, chat_data, iters=400, save_every=1000, steps_per_eval=1000, test_batches=0)
    ctx_path = write_ctx(tmp_path, params)
    proc = start_step(ctx_path)
    lines = read_until(proc, lambda e: e["event"] == "train" and e["step"] >= 4)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    events, _ = parse(lines + out.splitlines())
    assert proc.returncode == 143
    stopped = of(events, "stopped")
    assert len(stopped) == 1 and stopped[0]["reason"] == "cancelled" and stopped[0]["signal"] == "SIGTERM"
    step = stopped[0]["step"]
    assert 4 <= step < 400
    adapters = tmp_path / "artifacts" / "D" / "train" / "adapters"
    assert (adapters / f"{step:07d}_adapters.safetensors").is_file()
    assert (adapters / "adapters.safetensors").is_file()
    result = json.loads(ctx_path.with_name("train.1.result.json").read_text())
    assert result == {"ok": False, "error": "cancelled (SIGTERM)"}


def test_the_jobs_own_timeout_saves_and_fails_so_a_retry_resumes(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    params = base_params(tiny_model, chat_data, iters=5000, timeout=8, save_every=10_000, steps_per_eval=10_000)
    code, events, _logs, result = run_step(write_ctx(tmp_path, params))
    assert code == 1
    stopped = of(events, "stopped")[0]
    assert stopped["reason"] == "timeout" and stopped["signal"] is None
    step = stopped["step"]
    assert result["error"].startswith(f"training time budget of 8 s used up at step {step} of 5000")
    if step == 0:  # a machine so busy that loading the model used the whole budget
        assert "no step was finished" in result["error"]
        return
    assert f"checkpoint {step:07d}_adapters.safetensors saved" in result["error"]
    assert (tmp_path / "artifacts" / "D" / "train" / "adapters" / f"{step:07d}_adapters.safetensors").is_file()


def test_full_fine_tune_and_a_changed_recipe_is_not_resumed(tiny_model: Path, chat_data: Path, tmp_path: Path) -> None:
    params = base_params(tiny_model, chat_data, iters=4, save_every=2, fine_tune_type="full", test_batches=0)
    code, events, logs, result = run_step(write_ctx(tmp_path, params))
    assert code == 0, "\n".join(logs[-40:])
    start = of(events, "train_start")[0]
    assert start["fine_tune_type"] == "full" and start["trainable_params"] > 10_000
    lora = {**params, "fine_tune_type": "lora", "iters": 8}
    code, events, logs, result = run_step(write_ctx(tmp_path, lora, attempt=2))
    assert code == 1
    assert "different recipe" in result["error"] and "fine_tune_type" in result["error"]


def test_dpo_without_mlx_lm_lora_says_it_is_not_installed(
    tmp_path: Path, chat_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from pipeline.train.runner import run

    monkeypatch.setitem(sys.modules, "mlx_lm_lora", None)  # as Python sees a package that is not installed
    assert importlib.util.find_spec("mlx_lm_lora") is None

    ctx = StepContext.model_validate_json(
        write_ctx(tmp_path, {"model": str(tmp_path), "data": str(chat_data), "training_mode": "dpo"}).read_text()
    )
    with pytest.raises(StepFailed, match=r"mlx-lm-lora.*not installed"):
        run(ctx)


def preference_row(i: int) -> dict[str, Any]:
    wrong = {**action(i), "tool": TOOLS[(i + 1) % len(TOOLS)]}
    return {
        "system": "answer with one JSON action",
        "prompt": task(i),
        "chosen": json.dumps(action(i)),
        "rejected": json.dumps(wrong),
    }


def test_dpo_through_mlx_lm_lora_keeps_the_progress_and_resume_contract(tiny_model: Path, tmp_path: Path) -> None:
    """Runs where mlx-lm-lora is importable (for example PYTHONPATH pointing at a ``pip install --target``)."""
    import importlib.util

    if importlib.util.find_spec("mlx_lm_lora") is None:
        pytest.skip("mlx-lm-lora is not installed")
    data = tmp_path / "dpo"
    data.mkdir()
    for name, n in (("train", 16), ("valid", 4)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(preference_row(i)) + "\n" for i in range(n)))
    params = base_params(tiny_model, data, training_mode="dpo", iters=6, save_every=3, test_batches=0)
    code, events, logs, result = run_step(write_ctx(tmp_path, {**params, "iters": 3}))
    assert code == 0, "\n".join(logs[-40:])
    assert [e["step"] for e in of(events, "train")] == [2, 3] and of(events, "train")[0]["train_loss"] > 0
    assert of(events, "train")[0]["val_step"] == 0 and of(events, "checkpoint")[-1]["step"] == 3
    code, events, logs, result = run_step(write_ctx(tmp_path, params, attempt=2))
    assert code == 0, "\n".join(logs[-40:])
    assert of(events, "resume")[0]["step"] == 3 and [e["step"] for e in of(events, "train")] == [5, 6]
    assert result["summary"]["training_mode"] == "dpo" and result["summary"]["steps"] == 6
