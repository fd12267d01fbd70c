"""The C heap of the viewer's process while its summary grows (glibc's ``mallopt`` and ``malloc_trim``; nothing
elsewhere): growing columns moved by remapping, not copied, and the free pages given back once the summary is done.
"""

from __future__ import annotations

from typing import Any

MMAP_THRESHOLD_BYTES = 1 << 20
M_MMAP_THRESHOLD = -3  # (glibc's malloc.h)
_REMAPPING: list[bool] = []


def grow_by_remapping() -> None:
    """From now on, blocks of 1 MiB and more get mappings of their own (glibc's ``M_MMAP_THRESHOLD``; nothing
    elsewhere), so a growing column is moved by remapping its pages, not copied. Once per process.

    glibc raises its threshold after the first big frees (the newline scan's 8 MiB chunks), and from then on each
    growth of a column below it copied the whole column: ~0.1-0.25 s of the viewer's process for 1 GB, in taking
    in the workers' answers. The newline scan reads into one buffer (``index_scan.LineEnds._read_big``), so its
    chunks are not mapped afresh each time. The answers (~200 KB) stay below the threshold."""
    if _REMAPPING:
        return
    _REMAPPING.append(True)
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def _libc_function(name: str) -> Any:
    """The C library's function ``name`` (None where there is none: not glibc, or no C library to load)."""
    import ctypes

    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def release_free_heap() -> None:
    """Give the free pages inside the C heap back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Growing the columns reallocates them again and again; glibc raises its mmap threshold after the first big frees,
    so later blocks come from the heap and leave free holes in it that stay counted in the process's private memory
    (measured: ~29 MB of 145 MB after 1 GB). Called once the summary is complete.
    """
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)
