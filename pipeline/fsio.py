"""Writing files so that a failure never truncates or half-writes what was there, and opening outside input safely.

Every file phasef writes goes through :func:`atomic_write_text`, :func:`atomic_write_bytes` or :func:`atomic_open`:
the data goes to a temporary file in the same folder, is flushed and fsynced, and is renamed over the destination
only when the whole write succeeded. On any error the temporary file is removed and the old file stays as it was.

:func:`check_regular_file` refuses what is not a regular file (a FIFO, a device, a socket) before anything reads it,
so a reader never hangs on a FIFO without a writer or reads ``/dev/zero`` forever.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, overload


class NotARegularFile(OSError):
    """Raised for a path that exists but is not a regular file (or a folder, where folders are allowed)."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def check_regular_file(path: Path, *, allow_dir: bool = False) -> Path:
    """Return ``path`` when it is a regular file (or a folder with ``allow_dir``); raise a clear error otherwise.

    Symlinks are followed. A missing path raises :class:`FileNotFoundError` naming it.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if stat.S_ISREG(st.st_mode) or (allow_dir and stat.S_ISDIR(st.st_mode)):
        return path
    want = "a regular file or a folder" if allow_dir else "a regular file"
    raise NotARegularFile(f"{path}: is {_kind(st.st_mode)}, not {want}; refusing to read it")


def fsync_dir(folder: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


@overload
@contextlib.contextmanager
def atomic_open(path: Path, mode: Literal["w"] = ..., *, fsync: bool = ...) -> Iterator[IO[str]]: ...
@overload
@contextlib.contextmanager
def atomic_open(path: Path, mode: Literal["wb"], *, fsync: bool = ...) -> Iterator[IO[bytes]]: ...
@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", *, fsync: bool = True) -> Iterator[IO[str]] | Iterator[IO[bytes]]:
    """Open a temporary file beside ``path``; on a clean exit rename it over ``path``, on an error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        if mode == "wb":
            fh: IO[str] | IO[bytes] = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
        with fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        with contextlib.suppress(OSError):
            # keep the old file's permissions, or the usual ones for a new file
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o644)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)
