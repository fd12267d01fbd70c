"""Foreign traces and run folders imported on the fly for ``phasef trace view`` and ``stats``, cached by content.

The canonical JSONL of an import is kept under ``imports`` of phasef's cache folder (``fsio.cache_root``:
``$PHASEF_CACHE_DIR``, else ``$XDG_CACHE_HOME/phasef``, else ``~/.cache/phasef``),
named by the sha256 of what was imported (the file's bytes, or every trace file of a folder with its relative path),
the format asked for, and the importers' own code, so that a changed file or a changed importer is imported afresh and
an unchanged one opens at once. The places that could not be used are kept beside it and reported again on every
open. Both files are written atomically; a damaged cache entry is imported again.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from pipeline.fsio import atomic_open, atomic_write_bytes, cache_root
from pipeline.traces.reader import BadLine, file_sha256

_CODE_VERSION: str | None = None


def cache_dir() -> Path:
    return cache_root() / "imports"


def _code_version() -> str:
    """A digest of the importers' source, so that cached imports are redone when an importer changes."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        digest = hashlib.sha256()
        here = Path(__file__).parent
        for source in sorted([*here.glob("*.py"), here.parent / "schema.py"]):
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
        _CODE_VERSION = digest.hexdigest()[:16]
    return _CODE_VERSION


@dataclass
class Imported:
    """A canonical file standing for ``source``."""

    source: Path
    file: Path
    format: str
    problems: list[BadLine] = field(default_factory=list)
    cached: bool = False  # True when the import was found in the cache


def _key(path: Path, fmt: str | None) -> str:
    from pipeline.traces.importers.folders import folder_digest

    content = folder_digest(path) if path.is_dir() else file_sha256(path)
    return hashlib.sha256(f"{content}\0{fmt or ''}\0{_code_version()}".encode()).hexdigest()


def import_cached(path: Path, fmt: str | None = None, *, jobs: int | None = None) -> Imported:
    """The canonical import of a foreign file or a run folder, from the cache when it is there.

    Raises what ``import_trace`` raises for a single file (``OSError``, ``UnknownFormat``, ``ValueError``), and
    ``UnknownFormat`` for a folder holding no trace that could be imported.
    """
    from pipeline.traces.importers import UnknownFormat, detect_format, import_trace
    from pipeline.traces.importers.folders import import_folder

    path = Path(path)
    key = _key(path, fmt)
    folder = cache_dir()
    target = folder / f"{key}.jsonl"
    meta = folder / f"{key}.problems.json"
    if target.is_file() and meta.is_file():
        try:
            saved = orjson.loads(meta.read_bytes())
            problems = [BadLine(**p) for p in saved["problems"]]
            return Imported(path, target, str(saved["format"]), problems, cached=True)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            pass  # a damaged entry: import again
    folder.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        with atomic_open(target, "wb") as fh:
            summary = import_folder(path, fh, fmt=fmt, jobs=jobs)
        problems = summary.skipped + summary.bad_lines
        if not summary.records:
            target.unlink(missing_ok=True)
            tried = f"{summary.files} file(s) tried" + (f"; first problem: {problems[0]}" if problems else "")
            raise UnknownFormat(f"{path}: a folder with no trace that could be imported ({tried})")
        name = "folder: " + ", ".join(f"{n} {c}" for n, c in sorted(summary.formats.items()))
    else:
        name = fmt or detect_format(path)
        records, problems = import_trace(path, name)
        with atomic_open(target, "wb") as fh:
            for record in records:
                fh.write(orjson.dumps(record) + b"\n")
    payload = {"source": str(path), "format": name, "problems": [asdict(p) for p in problems]}
    atomic_write_bytes(meta, orjson.dumps(payload))
    return Imported(path, target, name, list(problems))
