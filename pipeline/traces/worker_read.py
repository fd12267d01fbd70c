"""How a summary worker (``summary_worker``) reads the lines it is asked for: blocks of whole lines, mapped from the
page cache where the file can be mapped, else read into one buffer used again for the next."""

from __future__ import annotations

import contextlib
import mmap
import os
import resource
from collections.abc import Iterator


def mapped(fd: int, start: int, end: int) -> memoryview | None:
    """Bytes ``[start, end)`` of the file mapped from the page cache (no copy into the process), cut at the file's
    end; None where the file cannot be mapped (then it is read). The mapping goes when the last view of it does.

    Read with ``pread``, the kernel's copy of each batch was ~0.25 s of the workers' CPU a GB (sys time; mapped:
    ~0.04 s). A file cut short under a mapping raises SIGBUS when a page past its new end is touched: the worker dies
    and the viewer summarizes again in its own process (a shrunken file starts the index over anyway), and it leaves
    no core file (``no_core_file``)."""
    try:
        end = min(end, os.fstat(fd).st_size)
        if end <= start:
            return memoryview(b"")
        base = start - start % mmap.ALLOCATIONGRANULARITY
        mapping = mmap.mmap(fd, end - base, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=base)
    except (OSError, ValueError, OverflowError):
        return None
    return memoryview(mapping)[start - base :]


def no_core_file() -> None:
    """This process leaves no core file when it dies (by SIGBUS, a mapped file cut short under it: see ``mapped``)."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))


class BatchReader:
    """Reads the batches asked for (``read``): mapped (``mapped``), else into one buffer used again for the next."""

    def __init__(self, *, mapping: bool = True) -> None:
        self.buffer = bytearray()
        self.mapping = mapping

    def read(self, fd: int, start: int, end: int, count: int) -> memoryview:
        """Lines in bytes ``[start, end)`` as one block (split at newlines: ``summary._summarize_batch`` reads it so),
        valid until the next ``read``.

        The viewer asks for whole lines: ``end`` is just past the newline of the ``count``-th line from ``start``, so
        the block is the bytes without that newline (counting the newlines to check would cost ~0.6 s a GB). A file
        that changed under the pass gives other lines; the viewer starts over then.

        Read (where the file cannot be mapped): into one buffer, not a fresh ``bytes`` per batch (and a copy to drop
        the newline): fresh pages were faulted in and given back for each batch, and the kernel had 38 % of the
        worker's time (perf, a VM's page reporting included). A third of 1 GB: 0.86 s of the worker's CPU before,
        0.59 s with one buffer."""
        view = self.block(fd, start, end)
        got = len(view)
        return view[: got - 1] if got and view[got - 1] == 10 else view

    def block(self, fd: int, start: int, end: int) -> memoryview:
        """Bytes ``[start, end)`` of the file (fewer at its end), mapped or read into the buffer (grown to fit),
        valid until the next call."""
        view = mapped(fd, start, end) if self.mapping else None
        if view is None:
            size = end - start
            if len(self.buffer) < size:
                self.buffer = bytearray(size)
            view = memoryview(self.buffer)[:size]
            view = view[: os.preadv(fd, [view], start)]
        return view


def read_range(
    fd: int, start: int, end: int, batch_bytes: int, *, mapping: bool = True
) -> Iterator[bytes | memoryview]:
    """The lines of bytes ``[start, end)`` (``start`` a line's first byte, ``end`` just past a newline), about
    ``batch_bytes`` of them at a time, as blocks of lines without their last newline (split at newlines as the
    viewer's newline scan splits them). A block is mapped (``mapped``), else read into one buffer used again for the
    next (so no fresh pages to fault in): it is valid until the next one is asked for."""
    reader = BatchReader(mapping=mapping)
    pos = start
    while pos < end:
        view = reader.block(fd, pos, min(pos + batch_bytes, end))
        if not len(view):
            return  # (the file shrank: the viewer starts over)
        cut = _rfind_newline(view)
        if cut >= 0:
            yield view[:cut]
            pos += cut + 1
            continue
        data = bytes(view)
        while cut < 0 and pos + len(data) < end:  # a line longer than a batch
            more = os.pread(fd, min(batch_bytes, end - pos - len(data)), pos + len(data))
            if not more:
                return
            j = more.find(b"\n")
            data += more
            cut = len(data) - len(more) + j if j >= 0 else -1
        if cut < 0:
            return
        yield data[:cut]
        pos += cut + 1


def _rfind_newline(view: memoryview) -> int:
    """The offset of the last newline in ``view`` (-1: none), looked for from the end 4 KiB at a time (a view of a
    mapping has no ``rfind``; the last line of a batch is a few hundred bytes)."""
    end = len(view)
    while end > 0:
        start = max(0, end - 4096)
        j = bytes(view[start:end]).rfind(b"\n")
        if j >= 0:
            return start + j
        end = start
    return -1
