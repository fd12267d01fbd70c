"""Importers of other agents' trace formats into the canonical dirty-trace schema.

``detect_format`` tells the format of a file from its content (a ZIP that is an inspect_ai ``.eval``; JSONL whose
lines are canonical records or OpenHands events/records; a JSON document recognised by each format's ``sniff``),
``import_trace`` converts it. Every imported record is validated against the canonical schema and keeps its
provenance in ``source``: format, file, line (for line-based formats), a JSON pointer (for documents) and the
sha256 of the source file. JSONL is streamed; JSON documents are loaded whole (up to ``DOCUMENT_LIMIT_BYTES``).
Anything that is not a regular file (a FIFO, a device, a socket) is refused before a byte is read, and format
detection reads only a prefix.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from pipeline.fsio import FileTooLarge, open_regular, read_bytes_bounded
from pipeline.traces.importers import (
    agents,
    inspect_ai,
    mapped,
    mini_swe_agent,
    openhands,
    phasef,
    swe_agent,
    tau_bench,
)
from pipeline.traces.importers._common import Origin
from pipeline.traces.reader import BadLine, file_sha256
from pipeline.traces.schema import RECORD_TYPES, SCHEMA_VERSION, parse_record

BASE_FORMATS: tuple[str, ...] = ("phasef", "swe-agent", "openhands", "mini-swe-agent", "tau-bench", "inspect-ai")
FORMATS: tuple[str, ...] = (*BASE_FORMATS, *agents.FORMATS)
# Formats that are never detected, only asked for (``jsonl`` needs a mapping file).
EXPLICIT_FORMATS: tuple[str, ...] = (mapped.FORMAT,)

HEAD_BYTES = 1 << 20
HEAD_LINES = 50
# Larger files that are not recognisably anything else are read as canonical JSONL, never loaded whole.
DOCUMENT_LIMIT_BYTES = 512 * 2**20

# Document formats, in the order their sniffers are asked (the most specific first).
_DOCUMENT_SNIFFERS = (
    (swe_agent.FORMAT, swe_agent.sniff),
    (inspect_ai.FORMAT, inspect_ai.sniff),
    (tau_bench.FORMAT, tau_bench.sniff),
    (mini_swe_agent.FORMAT, mini_swe_agent.sniff),
    (openhands.FORMAT, openhands.sniff),
    *agents.DOCUMENT_SNIFFERS,
)


class UnknownFormat(ValueError):
    """The file is readable but in no format an importer understands (or not in the format that was asked for)."""


def _is_canonical(obj: dict[str, Any]) -> bool:
    kind = obj.get("kind")
    return obj.get("schema") == SCHEMA_VERSION or (isinstance(kind, str) and kind in RECORD_TYPES and "episode" in obj)


def _head_objects(head: bytes, complete: bool) -> tuple[list[dict[str, Any]], int]:
    """Decoded JSON objects among the first lines of ``head``, and the number of non-blank lines seen."""
    lines = head.split(b"\n")
    if not complete:
        lines.pop()  # the last piece may be cut in the middle
    objects: list[dict[str, Any]] = []
    non_blank = 0
    for line in lines[:HEAD_LINES]:
        if not line.strip():
            continue
        non_blank += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            objects.append(obj)
    return objects, non_blank


def _describe(doc: Any) -> str:
    if isinstance(doc, dict):
        return f"a JSON object with keys {', '.join(sorted(map(str, doc))[:8])}"
    if isinstance(doc, list):
        first = doc[0] if doc else None
        inner = f" of objects with keys {', '.join(sorted(map(str, first))[:8])}" if isinstance(first, dict) else ""
        return f"a JSON list{inner}"
    return f"a JSON {type(doc).__name__}"


def _load_document(path: Path) -> Any:
    try:
        return orjson.loads(read_bytes_bounded(path, DOCUMENT_LIMIT_BYTES))
    except MemoryError:
        raise FileTooLarge(f"{path}: a JSON document too large to load in the memory available") from None
    except orjson.JSONDecodeError as exc:
        raise UnknownFormat(
            f"{path}:{exc.lineno}: neither canonical JSONL nor a valid JSON document "
            f"(invalid JSON at column {exc.colno}: {exc.msg}); {agents.tried(FORMATS)}"
        ) from exc


def detect_format(path: Path) -> str:
    """The format of ``path`` (one of ``FORMATS``). Raises ``OSError`` when it cannot be read (missing, a
    directory, no permission) and ``UnknownFormat`` when it is not a format this package imports."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    with open_regular(path) as fh:
        head = fh.read(HEAD_BYTES)
        complete = len(head) < HEAD_BYTES or not fh.read(1)
    if head.startswith(b"PK\x03\x04"):
        if inspect_ai.is_eval_zip(path):
            return inspect_ai.FORMAT
        raise UnknownFormat(f"{path}: a ZIP archive that is not an inspect_ai .eval log")
    objects, non_blank = _head_objects(head, complete)
    if (found := agents.sniff_head(head, objects)) is not None:
        return found
    if objects and not (complete and non_blank == 1):
        for obj in objects:
            if _is_canonical(obj):
                return phasef.FORMAT
            if openhands.first_line_kind(obj):
                return openhands.FORMAT
        return phasef.FORMAT
    if not head.strip() or path.suffix == ".jsonl" or path.stat().st_size > DOCUMENT_LIMIT_BYTES:
        return phasef.FORMAT
    doc = _load_document(path)
    if isinstance(doc, dict) and _is_canonical(doc):
        return phasef.FORMAT
    for name, sniff in _DOCUMENT_SNIFFERS:
        if sniff(doc):
            return name
    raise UnknownFormat(f"{path}: {_describe(doc)} is none of the known formats; {agents.tried(FORMATS)}")


def _validation_reason(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "record"
    return f"field '{where}': {err['msg']}"


def _convert(path: Path, fmt: str, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    if fmt in agents.FORMATS:
        return agents.convert(path, fmt, origin, _load_document)
    if fmt == phasef.FORMAT:
        return phasef.convert_jsonl(path)
    if fmt == inspect_ai.FORMAT and inspect_ai.is_eval_zip(path):
        return inspect_ai.convert_zip(path, origin)
    if fmt == openhands.FORMAT:
        with open_regular(path) as fh:
            head = fh.read(HEAD_BYTES)
        objects, non_blank = _head_objects(head, len(head) < HEAD_BYTES)
        if path.suffix == ".jsonl" or (objects and non_blank > 1):
            return openhands.convert_jsonl(path, origin)
    doc = _load_document(path)
    converters = {
        swe_agent.FORMAT: (swe_agent.sniff, swe_agent.convert),
        inspect_ai.FORMAT: (inspect_ai.sniff, inspect_ai.convert),
        tau_bench.FORMAT: (tau_bench.sniff, tau_bench.convert),
        mini_swe_agent.FORMAT: (mini_swe_agent.sniff, mini_swe_agent.convert),
        openhands.FORMAT: (openhands.sniff, openhands.convert),
    }
    sniff, convert = converters[fmt]
    if not sniff(doc):
        raise UnknownFormat(f"{path}: {_describe(doc)} is not a {fmt} file (expected {agents.EXPECTED.get(fmt, fmt)})")
    return convert(path, doc, origin)


def import_trace(
    path: Path, fmt: str | None = None, *, mapping: Path | None = None
) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """Canonical record dicts converted from ``path`` and the places that could not be used.

    The format is detected unless given; ``mapping`` (a mapping file, see ``mapped``) implies ``jsonl``. Raises
    ``OSError`` when the file cannot be read, ``UnknownFormat`` when its format is unknown or is not ``fmt``, and
    ``ValueError`` for a ``fmt`` that is not in ``FORMATS`` or a mapping file that cannot be used.
    """
    path = Path(path)
    if mapping is not None and fmt in (None, mapped.FORMAT):
        fmt = mapped.FORMAT
    if fmt is not None and fmt not in FORMATS + EXPLICIT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS + EXPLICIT_FORMATS)}")
    if fmt == mapped.FORMAT and mapping is None:
        raise ValueError("format 'jsonl' needs a mapping file (--map map.toml)")
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    open_regular(path).close()  # refuse a FIFO or a device before any importer (or zipfile) opens it
    chosen = fmt or detect_format(path)
    origin = Origin(chosen, str(path), file_sha256(path), path.stat().st_mtime)
    if chosen == mapped.FORMAT:
        assert mapping is not None
        converted, bad = mapped.convert(path, mapping, origin)
    else:
        converted, bad = _convert(path, chosen, origin)
    records: list[dict[str, Any]] = []
    for position, record in enumerate(converted, 1):
        try:
            parse_record(record)
        except (ValidationError, ValueError) as exc:
            source = record.get("source")
            line = source.get("line") if isinstance(source, dict) else None
            reason = _validation_reason(exc) if isinstance(exc, ValidationError) else str(exc)
            bad.append(BadLine(file=str(path), line=line if isinstance(line, int) else position, reason=reason))
            continue
        records.append(record)
    return records, bad
