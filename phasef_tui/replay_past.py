"""What a replay shows of the files as they were at an event: the traces cut at the records stamped by then (a
prefix copy in a private folder), the log tail a step had written by its last progress event, and a jump target
read from what the operator typed."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from phasef_tui.log_tails import EVENT_PREFIX, LOG_TAIL_LINES
from phasef_tui.trace_feed import TraceFeed
from pipeline.replay import ChangedFile, Timeline
from pipeline.state import StepState

MAX_LOG_BYTES = 8 << 20
_TS = re.compile(rb'"ts"\s*:\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)')


@dataclass
class _TraceTimes:
    """Per trace line: the latest record time so far and the byte offset after the line."""

    offset: int = 0
    latest: float = float("-inf")
    stamps: list[float] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)


class PastTraces:
    """Feeds over the traces' records written by a point in time; the newest few per trace are kept. The caller
    serialises calls (``SessionSource``'s feeds lock)."""

    def __init__(self, session_dir: Path) -> None:
        self.session_dir = session_dir
        self.feeds: dict[tuple[Path, int], TraceFeed] = {}
        self.folder: Path | None = None
        self._times: dict[Path, _TraceTimes] = {}

    def feed(self, path: Path, now: float) -> TraceFeed:
        cut = self.cut(path, now)
        feed = self.feeds.get((path, cut))
        if feed is None:
            feed = self._prefix_feed(path, cut, now)
            self.feeds[(path, cut)] = feed
            for key in [k for k in self.feeds if k[0] == path and k[1] != cut][:-2]:
                old = self.feeds.pop(key)  # keep the newest few (a screen may still hold one)
                old.stop()
                old.path.unlink(missing_ok=True)
        return feed

    def settled(self) -> bool:
        return all(feed.settled for feed in self.feeds.values())

    def _prefix_feed(self, path: Path, cut: int, now: float) -> TraceFeed:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="phasef-replay-"))
        target = self.folder / f"{path.stem}.{abs(hash(str(path))) % 10**8}.{cut}.jsonl"
        with open(path, "rb") as src, open(target, "wb") as dst:
            remaining = cut
            while remaining > 0:
                chunk = src.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                dst.write(chunk)
                remaining -= len(chunk)
        rel = path.relative_to(self.session_dir) if path.is_relative_to(self.session_dir) else path
        when = datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S")
        feed = TraceFeed(target, follow=False, display_name=f"{rel} (as of {when})")
        feed.start()
        return feed

    def cut(self, path: Path, now: float) -> int:
        """Bytes of the trace holding the records stamped at or before ``now`` (whole lines, in order). The line
        times are read once, then only what was appended since."""
        try:
            size = path.stat().st_size
        except OSError:
            return 0
        scan = self._times.get(path)
        if scan is None or size < scan.offset:  # new, or replaced by a shorter file
            scan = self._times[path] = _TraceTimes()
        if size > scan.offset:
            with open(path, "rb") as fh:
                fh.seek(scan.offset)
                for raw in fh:
                    if not raw.endswith(b"\n"):
                        break  # a record still being written
                    scan.offset += len(raw)
                    found = _TS.search(raw)
                    if found:
                        scan.latest = max(scan.latest, float(found.group(1)))
                    scan.stamps.append(scan.latest)
                    scan.ends.append(scan.offset)
        count = bisect_right(scan.stamps, now)
        return scan.ends[count - 1] if count else 0

    def stop(self) -> None:
        for feed in self.feeds.values():
            feed.stop()
        self.feeds.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


class ChangeCheck:
    """Which recorded files changed since the journal named them, hashed in a thread (folders can be large): one
    check at a time; the newest position asked for wins the next one."""

    def __init__(self, timeline: Timeline, on_done: Callable[[], None]) -> None:
        self.timeline = timeline
        self.on_done = on_done
        self.done: tuple[int, list[ChangedFile]] | None = None
        self._lock = threading.Lock()

    def at(
        self, position: int, recorded: Callable[[], tuple[int, list[tuple[str, str, str]]]]
    ) -> list[ChangedFile] | None:
        """The answer for ``position`` once hashed (``recorded`` gives the files named by then); meanwhile the last
        answer (None before the first)."""
        done = self.done
        if done is not None and done[0] == position:
            return done[1]
        if self._lock.acquire(blocking=False):
            threading.Thread(target=self._check, args=recorded(), daemon=True).start()
        return None if done is None else done[1]

    def _check(self, position: int, recorded: list[tuple[str, str, str]]) -> None:
        """(``_lock`` held by the caller, released here)"""
        try:
            self.done = (position, self.timeline.changed_among(recorded))
        finally:
            self._lock.release()
        self.on_done()


def log_tail_as_of(session_dir: Path, st: StepState) -> tuple[str, ...]:
    """The tail of a step's log as it was: a running step's log cut at the line its last progress event named."""
    if not st.log:
        return ()
    running = st.state == "running"  # (a retrying step's attempt has ended: its log is whole)
    cut = max((p.get("_line", 0) for p in st.progress if p.get("_attempt") == st.attempts), default=0)
    path = Path(st.log) if Path(st.log).is_absolute() else session_dir / st.log
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_LOG_BYTES)
    except OSError:
        return ()
    lines = data.decode("utf-8", "replace").splitlines()
    if running:
        lines = lines[:cut]  # what the step had written by its last progress event before this point
    kept = [ln for ln in lines if not ln.startswith(EVENT_PREFIX)]
    return tuple(kept[-LOG_TAIL_LINES:])


def jump_target(text: str, here: float) -> float:
    """The time ``text`` names: ``HH:MM[:SS]`` (UTC, the day of ``here``), an ISO time, or ``+N``/``-N`` seconds
    from ``here``; ``ValueError`` saying what was expected."""
    text = text.strip()
    if text[:1] in "+-" and text[1:].replace(".", "", 1).isdigit():
        return here + float(text)
    try:
        if "T" in text or len(text) > 8:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
        else:
            day = datetime.fromtimestamp(here, UTC).date().isoformat()
            when = datetime.fromisoformat(f"{day}T{text}+00:00")
    except ValueError:
        raise ValueError(f"{text!r}: expected HH:MM[:SS] (UTC), an ISO time, or +/-seconds") from None
    return when.timestamp()
