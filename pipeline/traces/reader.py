"""Streaming reader of JSONL traces that never gives up on a file because of one bad line.

Traces are written while an agent runs and read while they grow, and they come from crashed runs, so a reader
meets every kind of damage: a line that is not JSON, invalid UTF-8, a torn last line (no newline: the writer is
still appending or died mid-write), a runaway line of many megabytes. Each is reported as a ``BadLine`` naming the
file, the 1-based line number and the reason, and reading goes on with the next line.

Memory stays bounded by the chunk size and ``max_line_bytes``: the file is read in chunks, and a line that grows past
the limit is not accumulated but skipped up to its newline and reported as too long.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from pipeline.fsio import open_regular
from pipeline.hashing import file_sha256 as file_sha256
from pipeline.problems import Problem

CHUNK_BYTES = 1 << 20
DEFAULT_MAX_LINE_BYTES = 16 * 2**20


BadLine = Problem
"""One line (or one place of a foreign document) that could not be used, and why."""


class Digest(Protocol):
    """The part of a ``hashlib`` hash object the reader uses (so callers get the file's hash in the same pass)."""

    def update(self, data: bytes, /) -> None: ...


@dataclass(frozen=True)
class _Tail:
    """Bytes after the last newline of the file: a complete last line without newline, or a torn write."""

    line: int
    data: bytes


def _decode_problem(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """Explain why a line did not decode; invalid UTF-8 is named as such (with its byte position)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"invalid UTF-8 at byte {bad.start} of the line"
    return f"invalid JSON at column {exc.colno}: {exc.msg}"


def _iter_line_batches(
    path: Path, max_line_bytes: int, digest: Digest | None, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, list[bytes]] | BadLine | _Tail]:
    """Yield ``(lines_before, complete_lines)`` per chunk, ``BadLine`` for too-long lines, and finally a ``_Tail``
    for bytes after the last newline.

    Batches keep the per-line work of the caller in one tight loop; line numbers are 0-based counts before the
    batch, so the caller adds one per line. ``start``/``end``: read only those bytes (``start`` at the beginning of
    a line; lines are then counted from it), up to the end of the file when ``end`` is None.
    """
    file = str(path)
    # Every line that comes out of one chunk's split is shorter than the chunk, so only lines pieced together
    # across chunks need a length check.
    chunk_size = max(1, min(CHUNK_BYTES, max_line_bytes))
    line_no = 0
    pending: list[bytes] = []
    pending_len = 0
    skipped: int | None = None  # bytes of a too-long line skipped so far; None when not skipping
    with open_regular(path) as fh:
        if start:
            fh.seek(start)
        left = -1 if end is None else max(0, end - start)
        read = fh.read
        while left and (chunk := read(chunk_size if left < 0 else min(chunk_size, left))):
            if left > 0:
                left -= len(chunk)
            if digest is not None:
                digest.update(chunk)
            start = 0
            if skipped is not None:
                nl = chunk.find(b"\n")
                if nl < 0:
                    skipped += len(chunk)
                    continue
                line_no += 1
                yield BadLine(
                    file=file,
                    line=line_no,
                    reason=f"line too long ({skipped + nl} bytes > limit {max_line_bytes}); skipped",
                )
                skipped = None
                start = nl + 1
            nl = chunk.find(b"\n", start)
            if nl < 0:
                pending.append(chunk[start:] if start else chunk)
                pending_len += len(chunk) - start
                if pending_len > max_line_bytes:
                    skipped = pending_len
                    pending = []
                    pending_len = 0
                continue
            if pending:
                joined = b"".join(pending) + chunk[start:nl]
                pending = []
                pending_len = 0
                if len(joined) > max_line_bytes:
                    line_no += 1
                    yield BadLine(
                        file=file,
                        line=line_no,
                        reason=f"line too long ({len(joined)} bytes > limit {max_line_bytes}); skipped",
                    )
                else:
                    yield line_no, [joined]
                    line_no += 1
                start = nl + 1
            lines = chunk[start:].split(b"\n") if start else chunk.split(b"\n")
            tail = lines.pop()
            if lines:
                yield line_no, lines
                line_no += len(lines)
            if tail:
                pending = [tail]
                pending_len = len(tail)
    if skipped is not None:
        yield BadLine(
            file=file,
            line=line_no + 1,
            reason=f"line too long ({skipped} bytes > limit {max_line_bytes}) and torn (no newline at end "
            "of file); skipped",
        )
    elif pending:
        yield _Tail(line_no + 1, b"".join(pending))


def iter_records(
    path: Path, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, digest: Digest | None = None
) -> Iterator[tuple[int, dict[str, Any]] | BadLine]:
    """Yield ``(line_no, object)`` for every JSON object line of ``path`` (1-based) and a ``BadLine`` for every
    line that is not one. Blank lines are skipped silently.

    A last line without a newline is accepted when it is a complete JSON object (a file that simply lacks the
    final newline) and reported as torn otherwise. A FIFO, device or socket is refused (``fsio.NotARegularFile``,
    an ``OSError``) before anything is read. When ``digest`` is given, every byte of the file is fed to it, so the
    caller gets the file's hash from the same pass. Raises ``OSError`` only when the file cannot be opened or read
    at all.

    Objects are yielded one at a time on purpose: a consumer that drops each one before the next is decoded
    keeps the garbage collector idle, where decoding a whole chunk into a list first makes it scan thousands of
    live dicts over and over.
    """
    file = str(path)
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    for item in _iter_line_batches(path, max_line_bytes, digest):
        if isinstance(item, BadLine):
            yield item
            continue
        if isinstance(item, _Tail):
            if not item.data.strip():
                continue
            try:
                obj = loads(item.data)
            except decode_error as exc:
                reason = _decode_problem(item.data, exc)
                yield BadLine(file=file, line=item.line, reason=f"torn last line (no newline at end of file): {reason}")
                continue
            if isinstance(obj, dict):
                yield item.line, obj
            else:
                yield BadLine(file=file, line=item.line, reason=f"expected a JSON object, got {type(obj).__name__}")
            continue
        line_no, lines = item
        for raw in lines:
            line_no += 1
            try:
                obj = loads(raw)
            except decode_error as exc:
                if raw.strip():
                    yield BadLine(file=file, line=line_no, reason=_decode_problem(raw, exc))
                continue
            if type(obj) is dict:
                yield line_no, obj
            else:
                yield BadLine(file=file, line=line_no, reason=f"expected a JSON object, got {type(obj).__name__}")


def good_records(path: Path, bad: Callable[[BadLine], object]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``iter_records`` with every ``BadLine`` handed to ``bad`` (a ``list.append``, a ``BadLineLog.add``): only
    the ``(line_no, object)`` pairs are yielded."""
    for item in iter_records(path):
        if isinstance(item, tuple):
            yield item
        else:
            bad(item)
