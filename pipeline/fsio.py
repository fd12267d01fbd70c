"""Writing files so that a failure never truncates or half-writes what was there, and opening outside input safely.

Every file phasef writes goes through :func:`atomic_write_text`, :func:`atomic_write_bytes` or :func:`atomic_open`:
the data goes to a temporary file in the same folder, is flushed and fsynced, and is renamed over the destination
only when the whole write succeeded. On any error the temporary file is removed and the old file stays as it was.

:func:`check_regular_file` refuses what is not a regular file (a FIFO, a device, a socket) before anything reads it,
so a reader never hangs on a FIFO without a writer or reads ``/dev/zero`` forever.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, overload


def _new_file_mode() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; done once, at import
    os.umask(mask)
    return 0o666 & ~mask


_NEW_FILE_MODE = _new_file_mode()


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


def open_regular(path: Path) -> IO[bytes]:
    """Open ``path`` for binary reading, refusing anything that is not a regular file without blocking.

    The file is opened with ``O_NONBLOCK`` (so opening a FIFO without a writer returns at once), checked with
    ``fstat`` on the open descriptor (no race with a rename in between), and switched back to blocking reads.
    Raises :class:`NotARegularFile`, or the usual ``OSError`` (missing, a folder, no permission).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a device without a driver): say what it is
            check_regular_file(path)
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(f"{path}: is {_kind(st.st_mode)}, not a regular file; refusing to read it")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


READ_PIECE = 1 << 20


class FileTooLarge(OSError):
    """Raised when a file that is read whole is larger than the caller's limit."""


def read_bytes_bounded(path: Path, limit: int) -> bytes:
    """The whole content of regular file ``path``; :class:`FileTooLarge` when it holds more than ``limit`` bytes.

    Never reads more than ``limit + 1`` bytes, whatever the file system reports as its size, and reads in pieces
    (``read(limit)`` would allocate the whole limit up front, even for an empty file).
    """
    pieces: list[bytes] = []
    total = 0
    with open_regular(path) as fh:
        while total <= limit and (piece := fh.read(min(READ_PIECE, limit + 1 - total))):
            pieces.append(piece)
            total += len(piece)
    if total > limit:
        raise FileTooLarge(f"{path}: larger than {limit} bytes; refusing to load it whole")
    return b"".join(pieces)


def read_text_bounded(path: Path, limit: int) -> str:
    """Like :func:`read_bytes_bounded`, decoded as UTF-8 (``UnicodeDecodeError`` for invalid UTF-8)."""
    return read_bytes_bounded(path, limit).decode("utf-8")


def read_json(
    path: Path, error: Callable[[str], Exception], *, missing: str = "no such file", limit: int | None = None
) -> Any:
    """The JSON document in ``path`` (at most ``limit`` bytes when given); a missing, unreadable or malformed file
    raises ``error(message)``, the message naming the file (and the line of a JSON error)."""
    try:
        text = path.read_text(encoding="utf-8") if limit is None else read_text_bounded(path, limit)
        return json.loads(text)
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """fsync a file (or, with ``directory``, a folder) by its path; a path that cannot be opened is left alone."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    fsync_path(folder, directory=True)


def cache_root() -> Path:
    """phasef's cache folder: ``$PHASEF_CACHE_DIR``, else ``$XDG_CACHE_HOME/phasef`` (when absolute), else
    ``~/.cache/phasef``."""
    env = os.environ.get("PHASEF_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache") / "phasef"


@overload
@contextlib.contextmanager
def atomic_open(
    path: Path, mode: Literal["w"] = ..., *, fsync: bool = ..., permissions: int | None = ...
) -> Iterator[IO[str]]: ...
@overload
@contextlib.contextmanager
def atomic_open(
    path: Path, mode: Literal["wb"], *, fsync: bool = ..., permissions: int | None = ...
) -> Iterator[IO[bytes]]: ...
@contextlib.contextmanager
def atomic_open(
    path: Path, mode: str = "w", *, fsync: bool = True, permissions: int | None = None
) -> Iterator[IO[str]] | Iterator[IO[bytes]]:
    """Open a temporary file beside ``path``; on a clean exit rename it over ``path``, on an error remove it.

    A symlink at ``path`` is followed (its target is replaced, the link stays); an existing ``path`` that is not a
    regular file (a device such as ``/dev/null``, a FIFO, a folder) is refused with :class:`NotARegularFile`. The new
    file keeps the old one's permissions (a new file: what ``open()`` gives), or takes ``permissions`` when given.
    """
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        # stat through the links first: /dev/stdout is a link to /proc/self/fd/1, whose target (a pipe, a tty) has
        # no path of its own
        existing = os.stat(path).st_mode
        if not stat.S_ISREG(existing):
            raise NotARegularFile(f"{path}: is {_kind(existing)}, not a regular file; refusing to replace it")
    if path.is_symlink():
        path = Path(os.path.realpath(path))
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
        if permissions is not None:  # (asked for: set whatever the umask and the old file had, or no rename)
            os.chmod(tmp, permissions)
        else:
            with contextlib.suppress(OSError):
                # keep the old file's permissions, or give a new file what open() would (0666 less the umask)
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) if path.exists() else _NEW_FILE_MODE)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def replace_folder(staging: Path, dest: Path) -> None:
    """Put the finished folder ``staging`` at ``dest`` (a sibling), replacing an old ``dest`` without a moment in
    which neither exists: the old folder is renamed aside first, and put back if the final rename fails."""
    aside: Path | None = None
    if dest.exists() or dest.is_symlink():
        aside = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(dest, aside)
    try:
        os.replace(staging, dest)
    except BaseException:
        if aside is not None:
            os.replace(aside, dest)
        raise
    fsync_dir(dest.parent)
    if aside is not None:
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True, permissions: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb", fsync=fsync, permissions=permissions) as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)
