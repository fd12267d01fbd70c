"""Write the eval report's JSON Schema (``schemas/eval_report.v1.schema.json``) from its pydantic model.

``python -m pipeline.bench.publish_schema`` regenerates the committed file; ``--check`` exits 1 when the committed
file differs from what the model gives, so a change to the report model cannot ship without its schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.report.eval_report import report_json_schema
from pipeline.traces.publish_schema import publish

SCHEMA_FILE = "eval_report.v1.schema.json"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_text() -> str:
    return json.dumps(report_json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="folder to write to (default: schemas/)")
    parser.add_argument("--check", action="store_true", help="only compare with the file there")
    args = parser.parse_args(argv)
    return publish(args.out / SCHEMA_FILE, schema_text(), check=args.check, module="pipeline.bench.publish_schema")


if __name__ == "__main__":
    sys.exit(main())
