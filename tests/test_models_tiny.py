"""The tiny Qwen3 model: deterministic, loadable by mlx_lm, with a tokenizer fitted to the workload."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from phasef_tui.cli import main
from pipeline.bench.prompt import Action, PromptState, build_messages, render_action
from pipeline.jobs.context import StepContext, StepFailed
from pipeline.models.tiny import EOS_TOKEN, init_step, init_tiny
from tests.step_helpers import step_context


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("tiny")
    a, b, c = base / "a", base / "b", base / "c"
    init_tiny(a, seed=0)
    init_tiny(b, seed=0)
    init_tiny(c, seed=1)
    return a, b, c


def test_same_seed_gives_identical_files(models: tuple[Path, Path, Path]) -> None:
    a, b, c = models
    assert _digests(a) == _digests(b)
    da, dc = _digests(a), _digests(c)
    assert da["model.safetensors"] != dc["model.safetensors"]
    assert da["tokenizer.json"] == dc["tokenizer.json"]  # the tokenizer depends on the workload only


def test_config_is_a_small_qwen3(models: tuple[Path, Path, Path]) -> None:
    config = json.loads((models[0] / "config.json").read_text())
    assert config["model_type"] == "qwen3"
    assert 64 <= config["hidden_size"] <= 128 and config["num_hidden_layers"] <= 4
    assert 1000 <= config["vocab_size"] <= 2048
    tok_cfg = json.loads((models[0] / "tokenizer_config.json").read_text())
    assert tok_cfg["eos_token"] == EOS_TOKEN and "im_start" in tok_cfg["chat_template"]


def test_mlx_lm_loads_it_and_generates(models: tuple[Path, Path, Path]) -> None:
    import mlx_lm

    model, tokenizer = mlx_lm.load(str(models[0]))
    messages = build_messages("Which file defines the function f?", PromptState(0, 0, 0, 0), [])
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert tokenizer.encode(EOS_TOKEN) == [tokenizer.eos_token_id]
    ids = tokenizer.encode(prompt)
    assert len(ids) < len(prompt) / 2.5  # the BPE fits the workload's text
    action = render_action(Action(act="search", arg="def process_event("))
    assert len(tokenizer.encode(action)) <= 16
    assert tokenizer.decode(tokenizer.encode(action)) == action
    text = mlx_lm.generate(model, tokenizer, prompt, max_tokens=8)
    assert isinstance(text, str)


def _ctx(tmp_path: Path, params: dict[str, object]) -> StepContext:
    return step_context(tmp_path, "A", "init_model", params, project=tmp_path, artifacts=tmp_path)


def test_init_step_creates_the_model_inside_the_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = init_step(_ctx(tmp_path, {"dir": "models/tiny", "seed": 0, "num_hidden_layers": 1}))
    assert summary["model_dir"] == str(tmp_path / "models" / "tiny")
    assert json.loads((tmp_path / "models" / "tiny" / "config.json").read_text())["num_hidden_layers"] == 1
    assert '"event":"model"' in capsys.readouterr().out
    with pytest.raises(StepFailed, match=r"params\.seed"):
        init_step(_ctx(tmp_path, {"seed": "zero"}))
    with pytest.raises(StepFailed, match="unknown key"):
        init_step(_ctx(tmp_path, {"size": 3}))


def test_cli_init_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "init-tiny", str(tmp_path / "m"), "--seed", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 2
    assert (tmp_path / "m" / "model.safetensors").is_file()
