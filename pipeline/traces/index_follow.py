"""Following a trace file as it is written: the file looked at again, and the indexer thread's loop over its index.

A followed file may grow, shrink, be truncated and rewritten, or be replaced (rotation: the path now names another
inode). ``FollowedFile`` says which, from the file and the line ends indexed so far; the ``TraceIndex`` starts over
when the content it indexed is gone. ``follow`` is the indexer thread: it works the index until everything is
indexed and summarized, then waits for the file to change.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Required, TypedDict, Unpack

from pipeline.fsio import open_regular
from pipeline.traces.index_scan import LineEnds

if TYPE_CHECKING:
    from pipeline.traces.index import TraceIndex

FileChange = Literal["same", "grown", "truncated", "rotated", "missing"]
IDLE_POLL_S = 0.05
"""How often a followed file is checked for growth when nothing is happening (20 Hz, the frame rate)."""


def open_regular_fd(path: Path) -> int:
    """A blocking read descriptor on regular file ``path``; a FIFO, device or socket raises ``NotARegularFile``."""
    fh = open_regular(path)
    try:
        return os.dup(fh.fileno())
    finally:
        fh.close()


class FollowedFile:
    """The open file an index reads (``fd``), reopened when its path comes to name another file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = open_regular_fd(path)
        self.inode = os.fstat(self.fd).st_ino

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def look_again(self, lines: LineEnds, known_size: int) -> tuple[FileChange, int]:
        """What happened to the file since ``lines`` were indexed and its size was ``known_size``, and its size now.

        "rotated": replaced, and reopened here; "truncated": the indexed lines are no longer all there; "grown": more
        to index (or the last line, counted without its newline, grew: the index must start over).
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "missing", known_size
        if st.st_ino != self.inode:
            fd = open_regular_fd(self.path)
            os.close(self.fd)
            self.fd = fd
            self.inode = os.fstat(fd).st_ino
            return "rotated", self.size()
        size = self.size()
        if lines.truncated(self.fd, size):
            return "truncated", size
        return ("grown" if size > known_size or lines.partial_grown(size) else "same"), size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class FollowOptions(TypedDict, total=False):
    """How ``follow`` goes on once everything is indexed."""

    follow: Required[bool]
    """Wait for the file to grow (else return once everything is indexed)."""
    idle_s: float
    """Poll interval, and the longest wait for ``wait_change``."""
    on_idle: Callable[[], None] | None
    """Called each time everything is indexed."""
    wait_change: Callable[[float], object] | None
    """Waits up to the given seconds for the file to change (a ``pipeline.watch.FileWatch``, which wakes on the write
    itself); without it the file is polled every ``idle_s``."""
    keep_following: Callable[[], bool] | None
    """Asked when everything is indexed; False: the writer is done, the loop ends."""


def follow(index: TraceIndex, stop: threading.Event, **options: Unpack[FollowOptions]) -> None:
    """The indexer loop: index everything, then (when following) wait for growth until ``stop`` is set, or until
    ``keep_following`` says no (the loop ends once the file is indexed).

    Between steps it sleeps for 0 seconds, which hands the interpreter to other threads (the UI) each chunk.
    """
    idle_s = options.get("idle_s", IDLE_POLL_S)
    on_idle, wait_change = options.get("on_idle"), options.get("wait_change")
    keep_following = options.get("keep_following")
    while not stop.is_set():
        if index.work_step():
            stop.wait(0)
            continue
        if index.let_worker_go():  # everything summarized: the process is not kept idle
            continue
        if on_idle is not None:
            on_idle()
        if not options["follow"] or (keep_following is not None and not keep_following()):
            return
        if wait_change is not None:
            wait_change(idle_s)
        else:
            stop.wait(idle_s)
        if stop.is_set():
            return
        index.check_file()
