"""Appends dirty-trace records as JSONL, flushed per record so that a viewer tailing the file sees every tick."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import orjson

from pipeline.traces.schema import TraceRecord


class TraceWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = open(path, "wb")
        self.records = 0
        self.ticks = 0

    def write(self, record: TraceRecord) -> dict[str, Any]:
        """Write one record (None fields left out) and return it as written."""
        data: dict[str, Any] = record.model_dump(mode="json", by_alias=True, exclude_none=True)
        self._fh.write(orjson.dumps(data) + b"\n")
        self._fh.flush()
        self.records += 1
        self.ticks += record.kind == "tick"
        return data

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
