"""Child-process entry point for function step kinds: ``python -m pipeline.jobs.run_function CTX.json FUNC``.

Runs ``FUNC(ctx)`` and writes ``result.json`` next to the context file: ``{"ok": true, "summary": {...}}`` or
``{"ok": false, "error": "..."}``. The summary is also written to the step's artifact folder as ``summary.json``.
SIGTERM becomes ``KeyboardInterrupt``-free cancellation: the function may catch ``StepCancelled`` to save state.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from pipeline.fsio import atomic_write_text
from pipeline.jobs.context import StepCancelled, StepContext, StepFailed


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str))


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise StepCancelled()


def main(argv: list[str]) -> int:
    ctx_path, function_path = Path(argv[0]), argv[1]
    result_path = ctx_path.with_name(ctx_path.name.replace(".ctx.json", ".result.json"))
    ctx = StepContext.model_validate_json(ctx_path.read_text(encoding="utf-8"))
    ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _on_term)
    from pipeline.registry import load_object

    try:
        func = load_object(function_path)
        summary = func(ctx)
        if summary is None:
            summary = {}
        if not isinstance(summary, dict):
            raise TypeError(f"{function_path} returned {type(summary).__name__}, expected a dict summary")
    except StepFailed as exc:
        _write_json(result_path, {"ok": False, "error": str(exc)})
        print(f"step failed: {exc}", file=sys.stderr)
        return 1
    except StepCancelled:
        _write_json(result_path, {"ok": False, "error": "cancelled (SIGTERM)"})
        return 143
    except Exception as exc:
        traceback.print_exc()
        _write_json(result_path, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _write_json(ctx.artifacts_dir / "summary.json", summary)
    _write_json(result_path, {"ok": True, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
