"""Write the JSON Schema of one dirty-trace line to ``schemas/dirty_trace.v1.schema.json``.

The file is generated from ``schema.json_schema()`` so that it can never drift from the pydantic models; other tools
(and other languages) validate traces against it. ``--check`` exits 1 when the written file is out of date.

    python -m pipeline.traces.publish_schema [--check] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.fsio import atomic_write_text
from pipeline.traces.schema import json_schema

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "schemas" / "dirty_trace.v1.schema.json"


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def publish(out: Path, text: str, *, check: bool, module: str) -> int:
    """Write ``text`` to ``out`` (atomically), or with ``check`` only compare: 1 when the file there differs, naming
    ``python -m module`` as the way to regenerate it."""
    if check:
        current = out.read_text(encoding="utf-8") if out.is_file() else None
        if current != text:
            print(f"{out} is out of date; run python -m {module}", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    atomic_write_text(out, text)
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.traces.publish_schema", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the schema")
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    return publish(args.out, render(), check=args.check, module="pipeline.traces.publish_schema")


if __name__ == "__main__":
    sys.exit(main())
