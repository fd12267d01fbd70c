"""Waking a reader when a file it follows changes: the kernel's file events instead of polling.

A follower (the trace indexer, the journal reader) used to look at its file 20 times a second whether or not it had
changed. ``FileWatch`` watches the file's folder in a thread and wakes the follower when the file is written,
replaced or removed. On Linux the thread blocks on an inotify descriptor (``inotify``): it does not wake at all
while nothing changes, so an idle TUI costs no CPU for it. Elsewhere (macOS: FSEvents) it runs a ``watchfiles``
watcher, whose loop wakes every ``STEP_MS``. The follower still looks on its own now and then (``SAFETY_S``, and
``IDLE_SAFETY_S`` under inotify), which covers a change made before the watcher was ready and a file system that
sends no events (a network mount). Where neither can run (no inotify and no watchfiles, too many watches, the
folder gone) it falls back to the old polling interval by itself: ``mode`` says which is in use.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import struct
import sys
import threading
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

DEBOUNCE_MS = 50
"""A file being appended to without pause still wakes its reader at least this often (the TUI's frame period)."""
STEP_MS = 50
"""How often the ``watchfiles`` loop wakes (it checks for changes and for the stop request each time)."""
SAFETY_S = 0.5
"""How long a reader waits at most while ``watchfiles`` runs (a change it could have missed costs no more)."""
IDLE_SAFETY_S = 2.0
"""How long a reader waits at most under inotify, which misses nothing once watching (a network mount may send
no events: its changes are seen within this)."""
RUST_TIMEOUT_MS = 250
"""How often the ``watchfiles`` thread checks that it should stop."""

# inotify(7)
IN_MODIFY = 0x2
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)
WATCH_MASK = IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
"""Written (appended, truncated), replaced by a rename, made, moved away, removed; the folder itself removed or
moved. (Closing after a write, or a changed time stamp, says nothing the reader needs: not watched.)"""
_EVENT = struct.Struct("iIII")
"""``struct inotify_event`` without its name: wd, mask, cookie, len (the name's padded length follows)."""
FOLDER_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED

Mode = Literal["inotify", "watchfiles", "polling"]


class _Inotify:
    """An inotify descriptor watching one folder (Linux), through the C library."""

    def __init__(self, folder: Path) -> None:
        import ctypes

        libc = _libc()
        init, add = libc.inotify_init1, libc.inotify_add_watch
        add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        fd = init(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _os_error(folder)
        if add(fd, os.fsencode(folder), WATCH_MASK) < 0:
            error = _os_error(folder)
            os.close(fd)
            raise error
        self.fd = fd

    def events(self) -> list[tuple[int, bytes]]:
        """The events waiting (mask, name), or [] when none are."""
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return []
        found, at, size = [], 0, _EVENT.size
        while at + size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, at)
            found.append((mask, data[at + size : at + size + length].rstrip(b"\0")))
            at += size + length
        return found

    def close(self) -> None:
        os.close(self.fd)


@functools.cache
def _libc() -> Any:
    """The C library this process runs on (its symbols are the process's own: no search, no subprocess)."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _os_error(folder: Path) -> OSError:
    import ctypes

    errno = ctypes.get_errno()
    return OSError(errno, os.strerror(errno), str(folder))


def inotify_available() -> bool:
    """True where the C library has inotify (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return hasattr(_libc(), "inotify_init1")
    except OSError:
        return False


class FileWatch:
    """``wait(poll_s)`` returns when ``path`` changes (True), or after the interval (False).

    The interval is ``poll_s`` while polling (no watcher), ``max(poll_s, SAFETY_S)`` while ``watchfiles`` runs and
    ``max(poll_s, IDLE_SAFETY_S)`` under inotify.
    ``backends``: which watchers to try, in order (tests pick one).
    """

    def __init__(
        self,
        path: Path,
        *,
        use_watchfiles: bool = True,
        backends: tuple[Mode, ...] = ("inotify", "watchfiles"),
    ) -> None:
        self.path = Path(path)
        self.mode: Mode = "polling"
        self.error: str | None = None
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_w = -1
        if use_watchfiles:
            self._start(backends)

    def _start(self, backends: tuple[Mode, ...]) -> None:
        if not self.path.parent.is_dir():
            self.error = f"{self.path.parent}: no such folder; polling"
            return
        for backend in backends:
            if backend == "inotify" and inotify_available():
                try:
                    inotify = _Inotify(self.path.parent)
                except OSError as exc:  # too many watches or instances: the next way
                    self.error = f"inotify: {exc.strerror or exc}"
                    continue
                wake_r, self._wake_w = os.pipe()
                self.mode = "inotify"
                self._thread = threading.Thread(
                    target=self._run_inotify, args=(inotify, wake_r), name=f"watch:{self.path.name}", daemon=True
                )
                self._thread.start()
                return
            if backend == "watchfiles":
                try:
                    import watchfiles  # noqa: F401
                except ImportError as exc:
                    self.error = f"watchfiles is not installed ({exc}); polling"
                    continue
                self.mode = "watchfiles"
                self._thread = threading.Thread(target=self._run, name=f"watch:{self.path.name}", daemon=True)
                self._thread.start()
                return

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block until the watcher watches (tests); False when it never got there."""
        return self._ready.wait(timeout) and self.mode != "polling"

    def _run_inotify(self, inotify: _Inotify, wake_r: int) -> None:
        """Block until the folder's descriptor has events (or ``close`` writes to the wake pipe): no timeout, so
        nothing runs while nothing changes."""
        name = os.fsencode(self.path.name)
        poller = select.poll()
        poller.register(inotify.fd, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        self._ready.set()
        try:
            while not self._stop.is_set():
                ready = {fd for fd, _ in poller.poll()}
                if wake_r in ready:
                    break
                for mask, changed in inotify.events():
                    if mask & IN_Q_OVERFLOW or changed == name:
                        self._changed.set()  # (an overflow may have dropped ours)
                    if mask & FOLDER_GONE:
                        self.error = f"{self.path.parent}: the folder was removed or moved; polling"
                        return
        except OSError as exc:
            self.error = f"inotify stopped ({exc}); polling"
            log.info("%s: %s", self.path, self.error)
        finally:
            inotify.close()
            os.close(wake_r)
            self.mode = "polling"
            self._ready.set()
            self._changed.set()  # whoever waits looks at the file now

    def _run(self) -> None:
        import watchfiles

        name = self.path.name

        def ours(_change: object, changed: str) -> bool:
            return Path(changed).name == name

        try:
            watcher = watchfiles.watch(
                self.path.parent,
                watch_filter=ours,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=self._stop,
                rust_timeout=RUST_TIMEOUT_MS,
                yield_on_timeout=True,
                recursive=False,
                raise_interrupt=False,
            )
            for changes in watcher:
                self._ready.set()
                if changes:
                    self._changed.set()
        except Exception as exc:  # inotify limits, a folder removed, ...: poll instead
            self.error = f"watchfiles stopped ({exc}); polling"
            log.info("%s: %s", self.path, self.error)
        finally:
            self.mode = "polling"
            self._ready.set()
            self._changed.set()  # whoever waits looks at the file now

    def wait(self, poll_s: float) -> bool:
        mode = self.mode
        if mode == "inotify":
            interval = max(poll_s, IDLE_SAFETY_S)
        elif mode == "watchfiles":
            interval = max(poll_s, SAFETY_S)
        else:
            interval = poll_s
        woke = self._changed.wait(interval)
        self._changed.clear()
        return woke

    def close(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass  # the thread has ended already (its end of the pipe is closed)
            finally:
                os.close(self._wake_w)
                self._wake_w = -1
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None


def stop_follower(stop: threading.Event, watch: FileWatch | None, thread: threading.Thread | None) -> None:
    """Stop a follower thread that waits on ``watch`` (or on ``stop`` while polling): set ``stop``, close the watch,
    which wakes the thread at once, then wait for it to end (2 s at most; it is a daemon)."""
    stop.set()
    if watch is not None:
        watch.close()
    if thread is not None:
        thread.join(timeout=2)
