"""The canonical format itself: reading it "as an import" checks every record and keeps each one's own source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.traces.reader import BadLine, good_records
from pipeline.traces.schema import record_problem

FORMAT = "phasef"


def convert_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[BadLine]]:
    records: list[dict[str, Any]] = []
    bad: list[BadLine] = []
    for line, obj in good_records(path, bad.append):
        problem = record_problem(obj)
        if problem is not None:
            bad.append(BadLine(file=str(path), line=line, reason=problem))
        else:
            records.append(obj)
    return records, bad
