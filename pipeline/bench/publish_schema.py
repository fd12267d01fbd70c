"""Write the eval report's JSON Schema (``schemas/eval_report.v1.schema.json``) from its pydantic model.

``python -m pipeline.bench.publish_schema`` regenerates the committed file; ``--check`` exits 1 when the committed
file differs from what the model gives, so a change to the report model cannot ship without its schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.fsio import atomic_write_text
from pipeline.report.eval_report import report_json_schema

SCHEMA_FILE = "eval_report.v1.schema.json"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_text() -> str:
    return json.dumps(report_json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="folder to write to (default: schemas/)")
    parser.add_argument("--check", action="store_true", help="only compare with the file there")
    args = parser.parse_args(argv)
    path = args.out / SCHEMA_FILE
    text = schema_text()
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            print(f"{path} is out of date: run python -m pipeline.bench.publish_schema", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    atomic_write_text(path, text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
