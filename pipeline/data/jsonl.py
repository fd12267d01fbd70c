"""JSONL in and out for the Stage C datasets, and the record of lines that could not be used.

Reading (with the trace reader, which copes with any damage) never stops at a bad line: each one becomes a
``BadLine`` (file, 1-based line, reason naming the field) and the rest of the file is still read. Writing goes
to a temporary file renamed into place, so a step killed half-way never leaves a half-written dataset behind for
the next step to trust.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from pipeline.data.rows import pydantic_error_text
from pipeline.fsio import atomic_open, atomic_write_text
from pipeline.problems import Problem
from pipeline.traces.reader import BadLine, good_records

BAD_LINES_NAME = "bad_lines.jsonl"
SUMMARY_BAD_LINES_SHOWN = 50
"""How many bad lines a step summary lists in full (all of them are in ``bad_lines.jsonl``)."""

M = TypeVar("M", bound=BaseModel)


class BadLineLog:
    """Collects bad lines from every input of a step, once each, and writes ``bad_lines.jsonl``."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], BadLine] = {}

    def add(self, problem: Problem) -> None:
        self._seen.setdefault((problem.file, problem.line or 0), problem)

    def __len__(self) -> int:
        return len(self._seen)

    def items(self) -> list[BadLine]:
        return sorted(self._seen.values(), key=lambda b: (b.file, b.line or 0))

    def write(self, path: Path) -> None:
        write_jsonl(path, ({"file": b.file, "line": b.line, "reason": b.reason} for b in self.items()))

    def summary(self) -> dict[str, Any]:
        """The part of a step summary that reports bad input: the count and the first few in full."""
        items = self.items()
        return {
            "bad_lines": len(items),
            "bad_lines_shown": [str(b) for b in items[:SUMMARY_BAD_LINES_SHOWN]],
        }


def read_rows(path: Path, model: type[M], bad: BadLineLog) -> Iterator[tuple[int, M]]:
    """Read and validate every row of a JSONL file against ``model``; bad ones go to ``bad``."""
    for number, obj in good_records(path, bad.add):
        try:
            yield number, model.model_validate(obj)
        except ValidationError as exc:
            bad.add(BadLine(file=str(path), line=number, reason=pydantic_error_text(exc)))


def dumps(obj: Any) -> bytes:
    """One JSON line: compact, UTF-8 text kept as is, keys in the order given."""
    return orjson.dumps(obj)


def write_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Write rows (dicts or pydantic models) atomically; return how many were written."""
    with JsonlWriter(path) as writer:
        for row in rows:
            writer.write(row)
    return writer.count


class JsonlWriter:
    """Streams rows to a temporary file beside ``path`` and renames it into place on a clean exit; on an error
    (in the ``with`` body or while writing) the temporary file is removed and the old ``path`` stays as it was."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._cm = atomic_open(path, "wb")
        self._fh = self._cm.__enter__()

    def write(self, row: Any) -> None:
        obj = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
        self._fh.write(dumps(obj) + b"\n")
        self.count += 1

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._cm.__exit__(exc_type, exc, tb)


def write_json(path: Path, obj: Any) -> None:
    """Write one JSON document atomically (indented, for people to read)."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (cached per path, size and mtime, since every row of a trace needs it)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    cached = _SHA_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]
