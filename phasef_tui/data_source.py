"""Where the screens get their data: a trace file alone, or a live session (journal, traces, control socket).

The app holds one ``DataSource`` and calls ``poll()`` once a frame; the answer says which parts changed, and only
the screens showing those parts redraw. Screens never open files or sockets themselves.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from phasef_tui.trace_feed import TraceFeed
from pipeline.traces.summary_columns import KIND_TICK

if TYPE_CHECKING:
    from widgets.session_view import SessionView

SUMMARY_REDRAW_S = 0.25
"""While a trace is summarized in the background, its progress alone (badges, filter counts, chains) is reported at
most this often: at every frame (20 a second) the redraws took the viewer's process CPU that the summary needs. New
lines, a new file, the end of the summary and the operator's own actions are reported at the next frame as before."""
SCAN_SHOWN_LINES = 1000
"""Lines found by a file's first scan, beyond these (more than any screen shows), are progress too while the scan
has not reached the end of the file: reported at most every ``SUMMARY_REDRAW_S``, as the summary's. (At every frame
of a 1 GB file's scan they redrew the bars and took the count in, ~0.1 s of the viewer's main thread.)"""

CHANGED_TRACES = "traces"
CHANGED_TRACE_FILE = "trace_file"
CHANGED_SESSION = "session"


class ApprovalError(Exception):
    """A decision could not be sent or was refused; the message says why (shown to the operator)."""


@dataclass(frozen=True)
class TraceProfile:
    """Per-tick figures of a trace for the report plots (read from the index summary, no parsing)."""

    label: str
    latencies: Sequence[float]
    context_chars: Sequence[int]


def trace_profile(feed: TraceFeed, label: str) -> TraceProfile:
    """Latency of every tick that called the model, and context size per tick, of the summarized lines."""
    s = feed.index.summaries
    n = len(s)
    kinds = s.kind[:n]
    lat = s.latency[:n]
    ctx = s.context_chars[:n]
    latencies = array("f", (v for k, v in zip(kinds, lat, strict=True) if k == KIND_TICK and not math.isnan(v)))
    contexts = array("i", (c for k, c in zip(kinds, ctx, strict=True) if k == KIND_TICK))
    return TraceProfile(label, latencies, contexts)


class DataSource:
    """Base: no session, no trace. Subclasses fill in what they have."""

    title = "phasef"
    operator: str | None = None
    playing = False
    """A replay moving on by itself (``phasef replay``, key ``z``): its frames keep the full rate, so each event shows
    at its recorded pace."""

    def __init__(self) -> None:
        self._trace_mark: tuple[int, ...] = ()
        self._summary_reported = 0.0
        self._feed_mark: int | None = None
        self.on_change: Callable[[], None] | None = None
        """Called (from any thread) when something changes after the source had settled."""

    def settled(self) -> bool:
        """Nothing can change any more unless the source calls ``on_change``: the app may stop polling."""
        return False

    @property
    def clocks_running(self) -> bool:
        """Something on screen counts time (a running step's elapsed time)."""
        return False

    def _wake(self) -> None:
        callback = self.on_change
        if callback is not None:
            callback()

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start background readers (called once the app is running)."""

    def stop(self) -> None:
        """Stop background readers and close files."""

    # -- what there is ---------------------------------------------------------------------------------------------
    @property
    def has_session(self) -> bool:
        return False

    @property
    def feed(self) -> TraceFeed | None:
        """The trace the Traces and Chains screens show."""
        return None

    def trace_files(self) -> list[Path]:
        return []

    def select_trace(self, path: Path) -> None:
        raise ValueError("this source has a single trace")

    def session_view(self, now: float) -> SessionView | None:
        return None

    def log_tail(self, step_key: str | None) -> tuple[str, ...]:
        return ()

    def log_tails(self, step_key: str | None) -> list[tuple[str | None, tuple[str, ...]]]:
        """The step's log tail, then one per further rank or shard of a step run as several processes, each with
        its label ("rank 1", "shard 2"); the first one's label is None for a step run as one process."""
        return [(None, self.log_tail(step_key))]

    def view_time(self, now: float) -> float:
        """The time the screens show the session at (running steps' elapsed time counts to it): ``now``, except
        for a replay in the past, where it is the time of the event shown."""
        return now

    def profiles(self) -> list[TraceProfile]:
        feed = self.feed
        return [trace_profile(feed, Path(feed.display_name).name)] if feed is not None else []

    def approve(self, gate_id: str, decision: str, reason: str, *, override: bool = False) -> str:
        raise ApprovalError("no session: decisions are signed in a session (phasef attach)")

    def step_action(self, op: str, step: str, reason: str) -> str:
        """Retry (``op`` "retry") or cancel ("cancel") a step of the running session; the confirmation or
        ``ApprovalError``."""
        raise ApprovalError("no session: steps are retried and cancelled in a session (phasef attach)")

    # -- change detection ---------------------------------------------------------------------------------------------
    def poll(self) -> set[str]:
        """What changed since the last call (cheap: a few integers compared)."""
        changed: set[str] = set()
        feed = self.feed
        if id(feed) != self._feed_mark:
            self._feed_mark = id(feed)
            self._trace_mark = ()
            changed.add(CHANGED_TRACE_FILE)
        if feed is not None:
            index = feed.index
            mark = (index.generation, len(index), index.size, index.summarized, index.chain_count)
            old = self._trace_mark
            if mark != old:
                now = time.monotonic()
                progress_only = old[:3] == mark[:3] or (
                    old[:1] == mark[:1]  # (the same generation: not indexed again from scratch)
                    and old[2] == mark[2]  # the file did not grow: the scan found more of it
                    and old[1] >= SCAN_SHOWN_LINES
                    and index.scanned < index.size  # (the scan's last step, its end, is reported at once)
                )
                if not (progress_only and now - self._summary_reported < SUMMARY_REDRAW_S and not index.complete):
                    self._trace_mark = mark
                    self._summary_reported = now
                    changed.add(CHANGED_TRACES)
        return changed


class TraceFileSource(DataSource):
    """One trace file, viewed without a session (``phasef trace view FILE``)."""

    def __init__(self, feed: TraceFeed) -> None:
        super().__init__()
        self._feed = feed
        self.title = feed.display_name

    @property
    def feed(self) -> TraceFeed:
        return self._feed

    def trace_files(self) -> list[Path]:
        return [self._feed.path]

    def start(self) -> None:
        self._feed.start()

    def settled(self) -> bool:
        return self._feed.settled

    def stop(self) -> None:
        self._feed.stop()
