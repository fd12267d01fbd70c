"""Waking a reader when a file it follows changes: ``watchfiles`` (inotify and the like) instead of polling.

A follower (the trace indexer, the journal reader) used to look at its file 20 times a second whether or not it had
changed. ``FileWatch`` runs a ``watchfiles`` watcher on the file's folder in a thread and wakes the follower when the
file is written, replaced or removed; the follower still looks on its own now and then (``safety_s``), which covers
a change made before the watcher was ready. Where ``watchfiles`` cannot run (not installed, no inotify, too many
watches) it falls back to the old polling interval by itself: ``mode`` says which is in use.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

DEBOUNCE_MS = 50
"""A file being appended to without pause still wakes its reader at least this often (the TUI's frame period)."""
STEP_MS = 10
SAFETY_S = 0.5
"""How long a reader waits at most while the watcher runs (a change it could have missed costs no more)."""
RUST_TIMEOUT_MS = 250
"""How often the watcher thread checks that it should stop."""


class FileWatch:
    """``wait(poll_s)`` returns when ``path`` changes (True), or after the interval (False).

    The interval is ``poll_s`` while polling (no watcher) and ``max(poll_s, SAFETY_S)`` while the watcher runs.
    """

    def __init__(self, path: Path, *, use_watchfiles: bool = True) -> None:
        self.path = Path(path)
        self.mode: Literal["watchfiles", "polling"] = "polling"
        self.error: str | None = None
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        if use_watchfiles:
            self._start()

    def _start(self) -> None:
        try:
            import watchfiles  # noqa: F401
        except ImportError as exc:
            self.error = f"watchfiles is not installed ({exc}); polling"
            return
        if not self.path.parent.is_dir():
            self.error = f"{self.path.parent}: no such folder; polling"
            return
        self.mode = "watchfiles"
        self._thread = threading.Thread(target=self._run, name=f"watch:{self.path.name}", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block until the watcher watches (tests); False when it never got there."""
        return self._ready.wait(timeout) and self.mode == "watchfiles"

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
        interval = max(poll_s, SAFETY_S) if self.mode == "watchfiles" else poll_s
        woke = self._changed.wait(interval)
        self._changed.clear()
        return woke

    def close(self) -> None:
        self._stop.set()
        self._changed.set()
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
