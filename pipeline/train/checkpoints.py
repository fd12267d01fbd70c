"""The adapter folder of a training job: checkpoint names, finding the newest one, and writing files atomically.

The layout is mlx_lm's (``0000100_adapters.safetensors`` every ``save_every`` steps, ``adapters.safetensors`` for the
latest weights, ``adapter_config.json`` for loaders such as ``mlx_lm.server --adapter-path``), with two additions:
the step number in a checkpoint's name counts from the start of the whole run (mlx_lm restarts at 1 on every
``--resume-adapter-file``), and ``0000100_optimizer.safetensors`` holds the optimizer state at that step, so that a
resumed run continues the same learning-rate schedule and moments instead of warming up again.

Every file is written under a temporary name and renamed into place after an fsync: a job killed with SIGKILL in the
middle of a save leaves the previous checkpoint intact, never a torn one that a retry would trust.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.fsio import atomic_write_text, fsync_dir, fsync_path

ADAPTER_FILE = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
CHECKPOINT_PATTERN = re.compile(r"^(\d{7,})_adapters\.safetensors$")
PARTIAL_MARK = ".partial"


def checkpoint_name(step: int) -> str:
    return f"{step:07d}_adapters.safetensors"


def optimizer_name(step: int) -> str:
    return f"{step:07d}_optimizer.safetensors"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    adapters: Path
    optimizer: Path | None
    """The optimizer state saved with it, when present (checkpoints written by mlx_lm itself have none)."""


def list_checkpoints(adapter_dir: Path) -> list[Checkpoint]:
    """Every complete checkpoint in the folder, oldest first."""
    if not adapter_dir.is_dir():
        return []
    found: list[Checkpoint] = []
    for path in adapter_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if not match or not path.is_file():
            continue
        step = int(match.group(1))
        opt = adapter_dir / optimizer_name(step)
        found.append(Checkpoint(step, path, opt if opt.is_file() else None))
    return sorted(found, key=lambda c: c.step)


def newest_checkpoint(adapter_dir: Path) -> Checkpoint | None:
    found = list_checkpoints(adapter_dir)
    return found[-1] if found else None


def remove_partials(adapter_dir: Path) -> list[Path]:
    """Delete files left half-written by a killed save (they were never renamed into place)."""
    removed: list[Path] = []
    if adapter_dir.is_dir():
        for path in adapter_dir.iterdir():
            if path.name.startswith(".") and PARTIAL_MARK in path.name:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def partial_path(dest: Path) -> Path:
    """A temporary name in the same folder that keeps the suffix (mlx appends ``.safetensors`` otherwise)."""
    return dest.with_name(f".{dest.stem}{PARTIAL_MARK}{dest.suffix}")


def write_atomically(dest: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` (for writers that need a path, such as mlx's savers), fsync the file, rename it to
    ``dest`` and fsync the folder; on any error the temporary file is removed and ``dest`` stays as it was."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(dest)
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)


def write_text_atomically(dest: Path, text: str) -> None:
    atomic_write_text(dest, text)
