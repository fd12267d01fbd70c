"""Reads and checks the training data folder (``train.jsonl``, ``valid.jsonl``, ``test.jsonl``) before training.

mlx_lm reads these files with ``json.loads`` per line and guesses the format from the first row, so one bad line
ends a run with a bare traceback. Here every line is checked first: a bad one is reported with its file, line and
field and left out, and the run trains on the rest. The formats are mlx_lm's own (``messages`` chat rows,
``prompt``/``completion`` rows, ``text`` rows) and, for preference training, ``prompt``/``chosen``/``rejected``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.problems import Problem

SPLITS = ("train", "valid", "test")
RowFormat = Literal["chat", "completions", "text", "preference"]


BadLine = Problem


def error_text(exc: ValidationError) -> str:
    """One line naming every failing field of a pydantic error."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"field '{loc}': {err['msg']}" if loc else str(err["msg"]))
    return "; ".join(parts)


def read_json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]] | BadLine]:
    """``(line number, object)`` per JSON-object line, or a ``BadLine`` saying why a line is unusable."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                yield BadLine(str(path), number, f"invalid JSON: {exc}")
                continue
            if not isinstance(obj, dict):
                yield BadLine(str(path), number, f"expected a JSON object, got {type(obj).__name__}")
                continue
            yield number, obj


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class ChatRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _has_answer(self) -> ChatRow:
        if not any(m.role == "assistant" for m in self.messages):
            raise ValueError("field 'messages': no assistant message, nothing to learn")
        return self


class CompletionRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    prompt: str
    completion: str = Field(min_length=1)


class TextRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str = Field(min_length=1)


class PreferenceRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    prompt: str
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)


ROW_MODELS: dict[RowFormat, type[BaseModel]] = {
    "chat": ChatRow,
    "completions": CompletionRow,
    "text": TextRow,
    "preference": PreferenceRow,
}


def guess_format(obj: dict[str, Any], mode: Literal["sft", "dpo"]) -> RowFormat | None:
    """The format mlx_lm would pick for this row (the same key precedence)."""
    if mode == "dpo":
        return "preference" if "chosen" in obj or "rejected" in obj else None
    if "prompt" in obj and "completion" in obj:
        return "completions"
    if "messages" in obj:
        return "chat"
    if "text" in obj:
        return "text"
    return None


@dataclass
class Split:
    name: str
    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    format: RowFormat | None = None

    @property
    def present(self) -> bool:
        return self.path.is_file()


def read_split(path: Path, mode: Literal["sft", "dpo"]) -> Split:
    """All usable rows of one file; the first usable row fixes the format for the rest (as in mlx_lm)."""
    split = Split(path.stem, path)
    if not path.is_file():
        return split
    for item in read_json_objects(path):
        if isinstance(item, BadLine):
            split.bad.append(item)
            continue
        number, obj = item
        fmt = guess_format(obj, mode)
        if fmt is None:
            wanted = "'prompt'/'chosen'/'rejected'" if mode == "dpo" else "'messages', 'prompt'+'completion' or 'text'"
            split.bad.append(BadLine(str(path), number, f"no known row format: expected {wanted}"))
            continue
        if split.format is not None and fmt != split.format:
            split.bad.append(
                BadLine(str(path), number, f"a {fmt} row in a file of {split.format} rows (from its first row)")
            )
            continue
        try:
            ROW_MODELS[fmt].model_validate(obj)
        except ValidationError as exc:
            split.bad.append(BadLine(str(path), number, error_text(exc)))
            continue
        split.format = fmt
        split.rows.append(obj)
    return split


def read_splits(data_dir: Path, mode: Literal["sft", "dpo"]) -> dict[str, Split]:
    return {name: read_split(data_dir / f"{name}.jsonl", mode) for name in SPLITS}
