"""Importing a whole run folder: a Claude Code project folder, a Codex sessions tree, a Voyager checkpoint, a folder of
SWE-agent trajectories or of OpenHands output, or any mix of trace files.

The folder is walked lazily (sorted, hidden folders skipped) and every file that can hold a trace (``.jsonl``,
``.json``, ``.traj``, ``.eval``, ``.md`` aider histories, the files of a Voyager ``events/`` folder) is imported on its
own, one or more episodes per file. A Voyager checkpoint (a folder with ``events/`` and ``curriculum/``) is one unit.
Files are converted in worker processes, at most ``window`` at a time, and their records are written to the output in
the walk's order as soon as each is done, so memory depends on the largest file, not on the size of the folder.

Nothing is lost silently: a file of no known format, a file that cannot be read, and every bad line of the files that
were imported are listed in the summary as ``file:line: reason``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from pipeline.fsio import open_regular
from pipeline.traces.reader import BadLine

TRACE_SUFFIXES = frozenset({".jsonl", ".json", ".traj", ".eval"})
SKIPPED_NAMES = frozenset({"completed_tasks.json", "failed_tasks.json", "qa_cache.json", "chest_memory.json"})
# Side files that sit beside traces and are not traces (metadata, configs, the tools' own indexes).
SIDE_FILE_SUFFIXES = (".meta.json", ".config.json", ".pred", ".patch")


class Writer(Protocol):
    """Where a folder import writes (a binary file, or anything with its ``write``)."""

    def write(self, data: bytes, /) -> int: ...


@dataclass
class Unit:
    """One thing to import: a file, or a Voyager checkpoint folder."""

    path: Path
    checkpoint: bool = False


@dataclass
class FolderSummary:
    """What a folder import did: files and formats, records, what was skipped and why."""

    folder: str
    files: int = 0
    records: int = 0
    episodes: int = 0
    ticks: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    skipped: list[BadLine] = field(default_factory=list)  # whole files that could not be imported (the first KEPT)
    bad_lines: list[BadLine] = field(default_factory=list)  # places inside imported files (the first KEPT)
    skipped_count: int = 0  # all of them, kept or not
    bad_line_count: int = 0
    not_traces: int = 0  # files whose names say they are not traces (READMEs, configs), not read


# Problems kept in memory for the summary; past this they are only counted, so that a folder of damaged files does
# not need memory in proportion to its damage.
KEPT = 10_000


def _is_candidate(path: Path) -> bool:
    name = path.name
    if name in SKIPPED_NAMES or name.endswith(SIDE_FILE_SUFFIXES):
        return False
    lowered = name.lower()
    if lowered.endswith(".md"):
        if "aider.chat.history" in lowered:
            return True
        from pipeline.traces.importers import aider

        try:
            with open_regular(path) as fh:
                return aider.sniff_text(fh.read(1 << 14))
        except OSError:
            return False
    return Path(name).suffix.lower() in TRACE_SUFFIXES


def iter_units(folder: Path, counter: Callable[[], None] | None = None) -> Iterator[Unit]:
    """The units of ``folder`` in a stable order, found lazily. ``counter`` is called for each file left out."""
    from pipeline.traces.importers import voyager

    if voyager.is_checkpoint(folder):
        yield Unit(folder, checkpoint=True)
        return
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs.sort()
        checkpoints = [d for d in dirs if voyager.is_checkpoint(here / d)]
        for name in checkpoints:
            yield Unit(here / name, checkpoint=True)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in checkpoints]
        for name in sorted(files):
            path = here / name
            # a FIFO, socket or device is never opened (reading one could block forever); symlinks are followed
            if path.is_file() and _is_candidate(path):
                yield Unit(path)
            elif counter is not None:
                counter()


def count_units(folder: Path) -> int:
    return sum(1 for _ in iter_units(folder))


def _skip(path: Path, message: str) -> BadLine:
    """A whole-file problem as ``file:line: reason``; the line is the one the message names, else 0."""
    prefix = f"{path}:"
    line = 0
    if message.startswith(prefix):
        message = message[len(prefix) :]
        number, _, rest = message.partition(":")
        if number.isdigit():
            line, message = int(number), rest
    return BadLine(file=str(path), line=line, reason=message.strip() or "cannot import")


def import_unit(unit: Unit, fmt: str | None) -> tuple[str, list[dict[str, Any]], list[BadLine], BadLine | None]:
    """``(format, records, bad_lines, skipped)`` of one unit; never raises for bad input."""
    from pipeline.traces.importers import UnknownFormat, import_trace, voyager

    if unit.checkpoint:
        try:
            records, bad = voyager.convert_checkpoint(unit.path)
        except OSError as exc:
            return voyager.FORMAT, [], [], _skip(unit.path, f"cannot read the checkpoint: {exc.strerror or exc}")
        return voyager.FORMAT, records, bad, None
    try:
        records, bad = import_trace(unit.path, fmt)
    except (UnknownFormat, ValueError) as exc:
        return "", [], [], _skip(unit.path, str(exc))
    except OSError as exc:
        return "", [], [], _skip(unit.path, f"cannot read: {exc.strerror or exc}")
    found = records[0]["source"]["format"] if records and isinstance(records[0].get("source"), dict) else fmt or ""
    return str(found), records, bad, None


Serialized = tuple[str, bytes, int, int, int, list[BadLine], BadLine | None]


def _import_serialized(unit: Unit, fmt: str | None) -> Serialized:
    """``import_unit`` in a worker: the records come back as JSONL bytes (cheaper to send than dicts)."""
    name, records, bad, skip = import_unit(unit, fmt)
    episodes = len({(r.get("run_id"), r.get("episode")) for r in records})
    ticks = sum(1 for r in records if r.get("kind") == "tick")
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    return name, data, len(records), episodes, ticks, bad, skip


def import_folder(
    folder: Path,
    out: Writer,
    *,
    fmt: str | None = None,
    jobs: int | None = None,
    progress: Callable[[int, int | None, FolderSummary], None] | None = None,
    total: int | None = None,
) -> FolderSummary:
    """Import every trace under ``folder`` into ``out`` (canonical JSONL, in walk order).

    ``jobs`` worker processes convert files (default: the CPUs, at most 4; 1 converts in this process). ``progress``
    is called after each unit with (done, total, summary) where ``total`` is what the caller counted, if anything.
    """
    summary = FolderSummary(folder=str(folder))
    workers = jobs if jobs is not None else max(1, min(4, os.cpu_count() or 1))

    def not_trace() -> None:
        summary.not_traces += 1

    def take(unit: Unit, result: Serialized) -> None:
        name, data, records, episodes, ticks, bad, skip = result
        summary.files += 1
        if skip is not None:
            summary.skipped_count += 1
            if len(summary.skipped) < KEPT:
                summary.skipped.append(skip)
        else:
            out.write(data)
            summary.records += records
            summary.episodes += episodes
            summary.ticks += ticks
            summary.formats[name] += 1
        summary.bad_line_count += len(bad)
        summary.bad_lines.extend(bad[: max(0, KEPT - len(summary.bad_lines))])
        if progress is not None:
            progress(summary.files, total, summary)

    units = iter_units(folder, not_trace)
    if workers <= 1:
        for unit in units:
            take(unit, _import_serialized(unit, fmt))
        return summary
    window = workers * 2
    pending: list[tuple[Unit, Future[Serialized]]] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for unit in units:
            pending.append((unit, pool.submit(_import_serialized, unit, fmt)))
            if len(pending) >= window:
                first, future = pending.pop(0)
                take(first, future.result())
        for unit, future in pending:
            take(unit, future.result())
    return summary


def folder_digest(folder: Path) -> str:
    """A hash of the traces under ``folder``: each unit's relative path and content (a checkpoint's files too)."""
    digest = hashlib.sha256()
    for unit in iter_units(folder):
        paths = sorted(p for p in unit.path.rglob("*") if p.is_file()) if unit.checkpoint else [unit.path]
        for path in paths:
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            try:
                with open_regular(path) as fh:
                    while chunk := fh.read(1 << 20):
                        digest.update(chunk)
            except OSError as exc:
                digest.update(f"unreadable: {exc.errno}".encode())
            digest.update(b"\0")
    return digest.hexdigest()


def terminal_progress(stream: IO[str] = sys.stderr) -> Callable[[int, int | None, FolderSummary], None]:
    """A progress line rewritten in place (only when ``stream`` is a terminal)."""

    def show(done: int, total: int | None, summary: FolderSummary) -> None:
        of = f"/{total}" if total else ""
        stream.write(
            f"\r{done}{of} files, {summary.episodes} episodes, {summary.ticks} ticks, "
            f"{summary.skipped_count} skipped, {summary.bad_line_count} bad lines"
        )
        if total is not None and done >= total:
            stream.write("\n")
        stream.flush()

    return show
