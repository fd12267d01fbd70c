"""Content hashes for fingerprints, outputs and evidence (sha256, streamed in 1 MiB blocks)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MISSING = "missing"
BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    """The sha256 of a whole regular file, read in blocks (a FIFO or a device is refused, named)."""
    from pipeline.fsio import open_regular

    h = hashlib.sha256()
    with open_regular(path) as fh:
        while chunk := fh.read(BLOCK):
            h.update(chunk)
    return h.hexdigest()


def path_sha256(path: Path) -> str:
    """A file's hash, a directory's hash (over its files' relative names and hashes), or ``missing``."""
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        return mapping_sha256(
            {str(p.relative_to(path)): file_sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}
        )
    return MISSING


def mapping_sha256(items: dict[str, str]) -> str:
    """Hash of a name -> hash mapping, independent of insertion order."""
    return text_sha256("\n".join(f"{k}\t{v}" for k, v in sorted(items.items())))


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def hash_paths(paths: Iterable[Path], base: Path | None = None) -> dict[str, str]:
    """``{name: sha256}`` for each path (relative to ``base`` when inside it)."""
    out: dict[str, str] = {}
    for p in paths:
        name = str(p)
        if base is not None:
            try:
                name = str(p.relative_to(base))
            except ValueError:
                pass
        out[name] = path_sha256(p)
    return out
