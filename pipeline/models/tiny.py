"""A tiny Qwen3-architecture model with random weights and a tokenizer trained on the workload's own text.

It is the default "API model" of the embedded cycle and the base that Stage D fine-tunes: small enough that serving
it and training it on a 2-core CPU take seconds (MLX's CPU backend is single-threaded), real enough that
``mlx_lm.load``, ``mlx_lm.server`` and ``mlx_lm.lora`` treat it like any Hugging Face checkpoint. With random
weights it emits garbage, which is what a baseline should show. The same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.fsio import atomic_write_text, replace_folder
from pipeline.jobs.context import StepContext, StepFailed

EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", EOS_TOKEN)
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class TinySpec:
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 192
    vocab_size: int = 1536
    """target size of the BPE vocabulary (the model's is the tokenizer's actual size)"""
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0


def train_tokenizer(lines: list[str], vocab_size: int) -> Any:
    """A byte-level BPE (GPT-2 style pre-tokenization) trained on ``lines``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return tokenizer


def model_config(spec: TinySpec, vocab_size: int, eos_id: int) -> dict[str, Any]:
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.hidden_size // spec.num_attention_heads,
        "intermediate_size": spec.intermediate_size,
        "vocab_size": vocab_size,
        "max_position_embeddings": spec.max_position_embeddings,
        "rope_theta": spec.rope_theta,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "eos_token_id": eos_id,
        "torch_dtype": "float32",
    }


def init_tiny(out_dir: Path, seed: int = 0, spec: TinySpec = TinySpec()) -> dict[str, Any]:
    """Write a loadable model folder to ``out_dir`` (replacing it); returns a summary."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen3

    from pipeline.models.vocab import workload_corpus

    corpus = list(workload_corpus())
    tokenizer = train_tokenizer(corpus, spec.vocab_size)
    vocab_size = tokenizer.get_vocab_size()
    eos_id = tokenizer.token_to_id(EOS_TOKEN)
    config = model_config(spec, vocab_size, eos_id)

    mx.random.seed(seed)
    model = qwen3.Model(qwen3.ModelArgs.from_dict(config))  # type: ignore[no-untyped-call]
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)

    # built in a staging folder beside out_dir and renamed into place whole, so a failure keeps the old model
    final_dir, out_dir = out_dir, out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    try:
        summary = _write_model(out_dir, final_dir, weights, tokenizer, config, spec, seed, vocab_size, eos_id, corpus)
        replace_folder(out_dir, final_dir)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return summary


def _write_model(
    out_dir: Path,
    final_dir: Path,
    weights: dict[str, Any],
    tokenizer: Any,
    config: dict[str, Any],
    spec: TinySpec,
    seed: int,
    vocab_size: int,
    eos_id: int,
    corpus: list[str],
) -> dict[str, Any]:
    import mlx.core as mx

    mx.save_safetensors(str(out_dir / WEIGHTS_FILE), weights, metadata={"format": "mlx"})
    tokenizer.save(str(out_dir / "tokenizer.json"))
    _write_json(out_dir / "config.json", config)
    _write_json(
        out_dir / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": EOS_TOKEN,
            "pad_token": "<|endoftext|>",
            "bos_token": None,
            "unk_token": None,
            "add_bos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": spec.max_position_embeddings,
            "chat_template": CHAT_TEMPLATE,
        },
    )
    _write_json(out_dir / "special_tokens_map.json", {"eos_token": EOS_TOKEN, "pad_token": "<|endoftext|>"})
    _write_json(out_dir / "generation_config.json", {"eos_token_id": eos_id, "do_sample": False})
    parameters = sum(int(v.size) for v in weights.values())
    summary = {
        "model_dir": str(final_dir),
        "seed": seed,
        "vocab_size": vocab_size,
        "parameters": parameters,
        "spec": asdict(spec),
        "corpus_lines": len(corpus),
    }
    _write_json(out_dir / "phasef_model.json", {"kind": "tiny", **summary, "model_dir": None})
    return summary


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def init_step(ctx: StepContext) -> dict[str, Any]:
    """Builtin step: ``params = { dir = "models/tiny", seed = 0 }`` -> the model folder (relative to the session)."""
    allowed = {"dir", "seed", "hidden_size", "num_hidden_layers", "vocab_size"}
    unknown = sorted(set(ctx.params) - allowed)
    if unknown:
        raise StepFailed(f"params: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    seed = ctx.params.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise StepFailed(f"params.seed: expected an integer, got {seed!r}")
    overrides = {k: ctx.params[k] for k in ("hidden_size", "num_hidden_layers", "vocab_size") if k in ctx.params}
    for key, value in overrides.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise StepFailed(f"params.{key}: expected a positive integer, got {value!r}")
    out_dir = ctx.resolve(str(ctx.params.get("dir", "models/tiny")))
    ctx.log(f"creating tiny model in {out_dir} (seed {seed})")
    summary = init_tiny(out_dir, seed, TinySpec(**overrides))
    ctx.emit("model", model_dir=str(out_dir), parameters=summary["parameters"], vocab_size=summary["vocab_size"])
    return summary
