"""The training handoff package: contents, manifest, ``phasef handoff verify``, and its commands really running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlx_lm.lora import CONFIG_DEFAULTS, yaml_loader

from phasef_tui.cli import main as phasef
from pipeline.jobs.context import StepContext, StepFailed
from pipeline.train.handoff import build_step
from pipeline.train.lora_config import lora_config, to_yaml
from pipeline.train.params import TrainRecipe
from tests.step_helpers import step_context
from tests.test_train_runner import make_chat_data, make_tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("inputs")
    adapters = base / "adapters"
    adapters.mkdir()
    (adapters / "adapters.safetensors").write_bytes(b"weights of the local run")
    (adapters / "adapter_config.json").write_text('{"fine_tune_type": "lora"}')
    recipe = base / "recipe.json"
    recipe.write_text(json.dumps({"golden": 0.4, "failure_recovery": 0.6}))
    return {
        "model": make_tiny_model(base / "tiny-qwen3"),
        "data": make_chat_data(base / "mlx", n_train=16, n_valid=4, n_test=4),
        "recipe": recipe,
        "adapters": adapters,
    }


def ctx_for(session: Path, params: dict[str, Any]) -> StepContext:
    return step_context(session, "D", "handoff", params, session_id="s1")


def build(session: Path, inputs: dict[str, Path], **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "data": str(inputs["data"]),
        "base_model": str(inputs["model"]),
        "recipe": str(inputs["recipe"]),
        "adapters": str(inputs["adapters"]),
        "train": {"iters": 3, "batch_size": 2, "steps_per_report": 1, "val_batches": 1, "test_batches": 1},
    }
    params.update(extra)
    return build_step(ctx_for(session, params))


def verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = phasef(["handoff", "verify", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_package_holds_everything_and_verifies(
    tmp_path: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    summary = build(tmp_path, inputs)
    pkg = tmp_path / "handoff"
    assert summary["path"] == str(pkg) and summary["base_model_copied"] is True
    names = sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file())
    assert names == [
        "README.md",
        "SHA256SUMS",
        "adapters/adapter_config.json",
        "adapters/adapters.safetensors",
        "base_model.json",
        "base_model/config.json",
        "base_model/generation_config.json",
        "base_model/model.safetensors",
        "base_model/phasef_model.json",
        "base_model/special_tokens_map.json",
        "base_model/tokenizer.json",
        "base_model/tokenizer_config.json",
        "commands.sh",
        "data/test.jsonl",
        "data/train.jsonl",
        "data/valid.jsonl",
        "lora_config.local.yaml",
        "lora_config.yaml",
        "manifest.json",
        "recipe/recipe.json",
    ]
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert sorted(manifest["files"]) == [n for n in names if n != "manifest.json"]
    assert manifest["production_model"] == "mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit"
    assert (pkg / "data" / "train.jsonl").read_bytes() == (inputs["data"] / "train.jsonl").read_bytes()
    ref = json.loads((pkg / "base_model.json").read_text())
    assert ref["local"]["files"]["model.safetensors"] == manifest["files"]["base_model/model.safetensors"]["sha256"]
    assert not list(tmp_path.glob(".handoff.partial-*"))

    code, out = verify(pkg, capsys)
    assert code == 0 and "ok: 19 files match" in out
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS", "--quiet"], cwd=pkg, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr


def test_one_changed_byte_a_missing_or_an_extra_file_fails_verify(
    tmp_path: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    build(tmp_path, inputs)
    pkg = tmp_path / "handoff"
    data = pkg / "data" / "train.jsonl"
    raw = bytearray(data.read_bytes())
    raw[10] ^= 0x01
    data.write_bytes(bytes(raw))
    code, out = verify(pkg, capsys)
    assert code == 1 and "changed: data/train.jsonl" in out
    raw[10] ^= 0x01
    data.write_bytes(bytes(raw))
    assert verify(pkg, capsys)[0] == 0

    (pkg / "recipe" / "recipe.json").unlink()
    (pkg / "data" / "notes.txt").write_text("added later")
    code, out = verify(pkg, capsys)
    assert code == 1 and "missing: recipe/recipe.json" in out and "extra: data/notes.txt" in out

    assert phasef(["handoff", "verify", "--json", str(pkg)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["missing"] == ["recipe/recipe.json"] and report["extra"] == ["data/notes.txt"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no manifest"),
        ("{not json", "not JSON"),
        ('{"schema": "other/1", "files": {}}', "field 'schema'"),
        ('{"schema": "phasef.handoff/1", "files": {"../x": {"sha256": "' + "0" * 64 + '"}}}', "outside the package"),
        ('{"schema": "phasef.handoff/1", "files": {"a": {"sha256": "short"}}}', "files.a.sha256"),
    ],
)
def test_an_unreadable_manifest_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    code, out = verify(tmp_path, capsys)
    assert code == 2 and message in out


def test_bad_inputs_are_named(tmp_path: Path, inputs: dict[str, Path]) -> None:
    with pytest.raises(StepFailed) as err:
        build(tmp_path, inputs, data=str(tmp_path / "nope"), recipe=str(tmp_path / "gone.json"))
    assert "params.data" in str(err.value) and "params.recipe" in str(err.value)
    with pytest.raises(StepFailed, match="production_overrides"):
        build(tmp_path, inputs, production_overrides={"batch_size": 0})
    assert not (tmp_path / "handoff").exists()


def test_the_yaml_is_what_mlx_lm_reads() -> None:
    recipe = TrainRecipe.model_validate(
        {
            "learning_rate": 1e-5,
            "lr_schedule": {"name": "cosine_decay", "arguments": [1e-5, 1000, 1e-7], "warmup": 10},
            "lora_parameters": {"rank": 4, "scale": 10.0, "keys": ["self_attn.q_proj"]},
        }
    )
    config = lora_config(recipe, model='odd "name": x', data="data", adapter_path="../runs", test=True)
    loaded = yaml.load(to_yaml(config, "header\nline two"), Loader=yaml_loader)
    assert loaded == config
    assert isinstance(loaded["learning_rate"], float) and loaded["lr_schedule"]["arguments"][2] == 1e-7
    assert set(loaded) <= set(CONFIG_DEFAULTS) | {"test"}


def test_a_stage_c_lora_config_sets_the_recipe_under_the_train_table(tmp_path: Path, inputs: dict[str, Path]) -> None:
    stage_c = {"train": True, "data": "/x", "iters": 70, "learning_rate": 3e-4, "num_layers": 2, "mask_prompt": True}
    (tmp_path / "lora_config.yaml").write_text(json.dumps(stage_c))
    build(tmp_path, inputs, lora_config=str(tmp_path / "lora_config.yaml"))
    local = yaml.load((tmp_path / "handoff" / "lora_config.local.yaml").read_text(), Loader=yaml_loader)
    production = yaml.load((tmp_path / "handoff" / "lora_config.yaml").read_text(), Loader=yaml_loader)
    assert local["iters"] == 3 and local["learning_rate"] == 3e-4 and local["mask_prompt"] is True
    assert local["num_layers"] == 2 and local["data"] == "data" and local["model"] == "base_model"
    assert production["num_layers"] == 16 and production["learning_rate"] == 3e-4 and production["batch_size"] == 1
    assert production["model"] == "mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit"


@pytest.mark.slow
def test_commands_sh_reproduces_the_local_run(tmp_path: Path, inputs: dict[str, Path]) -> None:
    build(tmp_path, inputs)
    pkg = tmp_path / "handoff"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(["sh", "commands.sh", "local"], cwd=pkg, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ok: 19 files match" in run.stdout
    out = tmp_path / "handoff-runs" / "local"
    assert (out / "adapters.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert "Test loss" in run.stdout
    again = subprocess.run(
        [sys.executable, "-m", "phasef_tui.cli", "handoff", "verify", str(pkg)], capture_output=True, text=True
    )
    assert again.returncode == 0, "running the commands changed the package"
    bad = subprocess.run(["sh", "commands.sh", "bogus"], cwd=pkg, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
