"""A live session as the TUI sees it: the journal replayed and tailed, the traces it writes, and the control socket.

A reader thread replays ``journal.jsonl`` into a ``SessionState`` and then tails it (the journal is the only source of
truth, so a client that attaches late, or reattaches, sees everything). The UI takes a ``SessionView`` snapshot at
its frame rate. Decisions go to the supervisor through ``pipeline.control``; the journal then shows who signed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from phasef_tui.data_source import ApprovalError, DataSource, TraceProfile, trace_profile
from phasef_tui.log_tails import LogTails, Tails
from phasef_tui.session_views import (
    HEADLINE_KEYS,
    HEADLINE_LIMIT,
    PlanInfo,
    build_session_view,
    criterion_view,
    deltas_from,
    gate_view,
    headline_metrics,
    read_deltas,
    step_view,
    training_curves,
)
from phasef_tui.supervisor_requests import signed_message, supervisor_request
from phasef_tui.trace_feed import TraceFeed
from pipeline.fsio import open_regular
from pipeline.journal import JOURNAL_NAME, Event, JournalProblem, JournalTail
from pipeline.state import SessionState
from pipeline.watch import FileWatch, stop_follower
from widgets.session_view import DeltaRow, SessionView

__all__ = [  # the view builders moved to session_views; importers of this module keep working
    "HEADLINE_KEYS",
    "HEADLINE_LIMIT",
    "PlanInfo",
    "SessionSource",
    "criterion_view",
    "deltas_from",
    "gate_view",
    "headline_metrics",
    "looks_like_trace",
    "session_config_path",
    "step_view",
    "training_curves",
]

FINGERPRINT_ENV = "PHASEF_KEY_FINGERPRINT"
ROLE_ENV = "PHASEF_ROLE"
CONFIG_NAMES = ("config.resolved.toml", "config.toml")
POLL_S = 0.05
"""How often the journal is checked for new events (the frame rate)."""
TRACE_SCAN_S = 2.0
"""How often the artifacts folder is searched for new trace files."""
FINISHED_POLL_S = 1.0
"""How often the journal of a finished session is checked (only for a resume); nothing else is polled then."""
FINISHED_STATES = frozenset({"completed", "failed", "cancelled"})
"""Session states after which nothing changes unless the session is resumed (which appends to the journal)."""
PROFILE_TRACES = 4
"""Traces compared on the Report screen (baseline and re-eval, typically)."""


def session_config_path(session_dir: Path) -> Path | None:
    for name in CONFIG_NAMES:
        path = session_dir / name
        if path.exists():
            return path
    return None


def looks_like_trace(path: Path) -> bool:
    """A canonical dirty trace starts with a record that has ``kind`` and ``episode`` (cheap: first 4 KB)."""
    try:
        with open_regular(path) as fh:
            head = fh.read(4096)
    except OSError:
        return False
    first = head.split(b"\n", 1)[0]
    return b'"kind"' in first and b'"episode"' in first


class SessionSource(DataSource):
    """A session folder: journal (replayed, tailed), traces under ``artifacts/``, decisions via the control socket."""

    def __init__(
        self,
        session_dir: Path,
        *,
        operator: str,
        control_socket: Path | None = None,
        key_fingerprint: str | None = None,
        role: str | None = None,
    ) -> None:
        super().__init__()
        self.session_dir = Path(session_dir)
        self.journal_path = self.session_dir / JOURNAL_NAME
        if not self.journal_path.exists():
            raise FileNotFoundError(f"{self.journal_path}: no journal (is this a session folder?)")
        self.identify(operator, control_socket, key_fingerprint, role)
        self.plan = PlanInfo(session_config_path(self.session_dir))
        self.state = SessionState(session=self.session_dir.name)
        self.lock = threading.Lock()
        self.version = 0
        self._tail = JournalTail(self.journal_path)
        self._traces: list[Path] = []
        self._feed: TraceFeed | None = None
        self._feeds: dict[Path, TraceFeed] = {}
        self._feeds_lock = threading.Lock()
        self._chosen_trace: Path | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: FileWatch | None = None
        self._view_cache: tuple[int, SessionView] | None = None
        self._session_mark = -1
        self._logs = LogTails()
        self._deltas: tuple[tuple[DeltaRow, ...], tuple[str, ...]] = ((), ())
        self._last_trace_scan = 0.0
        self.read_journal()  # the first screen shows the whole history

    def identify(
        self, operator: str, control_socket: Path | None, key_fingerprint: str | None = None, role: str | None = None
    ) -> None:
        """Who this view signs as and where it sends decisions (set again on a view read ahead for someone else,
        ``attach_ahead``)."""
        self.operator = operator
        self.control_socket = control_socket
        # an SSH operator's identity comes from the server's authorized_keys entry, through the environment
        self.key_fingerprint = key_fingerprint or os.environ.get(FINGERPRINT_ENV)
        self.role = role or os.environ.get(ROLE_ENV)
        who = f"{operator} ({self.role})" if self.role else operator
        self.title = f"session {self.session_dir.name} · {who}"

    @property
    def journal_read(self) -> int:
        """Bytes of the journal read so far."""
        return self._tail.offset

    # -- journal -----------------------------------------------------------------------------------------------------
    def read_journal(self) -> bool:
        """Apply events appended since the last call; True if any."""
        return self._apply(self._tail.poll())

    def _apply(self, items: list[Event | JournalProblem]) -> bool:
        """The events applied to the state, the problems kept with it; True if there were any."""
        if not items:
            return False
        with self.lock:
            for item in items:
                if isinstance(item, Event):
                    self.state.apply(item)
                else:
                    self.state.problems.append(str(item))
            self.version += 1
        return True

    @property
    def finished(self) -> bool:
        """The journal says the session ended (completed, failed or cancelled)."""
        return self.state.state in FINISHED_STATES

    @property
    def clocks_running(self) -> bool:
        return self.state.state in ("running", "waiting")

    def settled(self) -> bool:
        """A finished session whose open traces are indexed to the end: the screens have nothing to redraw."""
        if not self.finished:
            return False
        with self._feeds_lock:
            return all(feed.settled for feed in self._feeds.values())

    def _run(self) -> None:
        was_finished = False
        while not self._stop.is_set():
            changed = self.read_journal()
            finished = self.finished
            if finished and not was_finished:
                self.scan_traces()  # the last trace files and reports, once
                self._follow_feeds(False)
            elif was_finished and not finished:  # resumed
                self._follow_feeds(True)
            if changed:  # (frames may have paused, on a finished run, or slowed, on a quiet live one)
                self._wake()
            was_finished = finished
            if finished:  # a resumed run writes to the journal again: woken by that write (or looks every second)
                if self._watch is not None:
                    self._watch.wait(FINISHED_POLL_S)
                else:
                    self._stop.wait(FINISHED_POLL_S)
                continue
            now = time.monotonic()
            if now - self._last_trace_scan >= TRACE_SCAN_S:
                self._last_trace_scan = now
                self.scan_traces()
            if self._watch is not None:
                self._watch.wait(POLL_S)  # woken by a write to the journal (watchfiles), else polls
            else:
                self._stop.wait(POLL_S)

    def _follow_feeds(self, follow: bool) -> None:
        with self._feeds_lock:
            feeds = list(self._feeds.values())
        for feed in feeds:
            if follow:
                feed.resume_following()
            else:
                feed.stop_following()

    def start(self) -> None:
        self.scan_traces()
        if self._thread is None:
            self._watch = FileWatch(self.journal_path)
            self._thread = threading.Thread(target=self._run, name="journal-reader", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        stop_follower(self._stop, self._watch, self._thread)
        self._thread = None
        for feed in self._feeds.values():
            feed.stop()
        self._feeds.clear()
        self._feed = None

    @property
    def has_session(self) -> bool:
        return True

    # -- traces -------------------------------------------------------------------------------------------------------
    def scan_traces(self) -> None:
        root = self.session_dir / "artifacts"
        found = sorted(
            (p for p in root.rglob("*.jsonl") if looks_like_trace(p)) if root.is_dir() else [],
            key=lambda p: str(p),
        )
        deltas = read_deltas(self.session_dir)
        with self.lock:
            if found != self._traces:
                self._traces = found
                self.version += 1
            if deltas != self._deltas:
                self._deltas = deltas
                self.version += 1

    def trace_files(self) -> list[Path]:
        with self.lock:
            return list(self._traces)

    @property
    def feed(self) -> TraceFeed | None:
        files = self.trace_files()
        if not files:
            return self._feed
        # the operator's choice, else the newest file (the one being written)
        wanted = self._chosen_trace if self._chosen_trace in files else max(files, key=_mtime)
        if self._feed is None or self._feed.path != wanted:
            self._open(wanted)
        return self._feed

    def _open(self, path: Path) -> None:
        self._feed = self._feed_for(path)

    def _feed_for(self, path: Path) -> TraceFeed:
        """Feeds stay open once made (switching back is instant; the Report compares several traces)."""
        with self._feeds_lock:  # (the Report screen asks from a worker thread)
            feed = self._feeds.get(path)
            if feed is None:
                rel = path.relative_to(self.session_dir) if path.is_relative_to(self.session_dir) else path
                feed = TraceFeed(path, follow=True, display_name=str(rel))
                if self.finished:
                    feed.stop_following()
                feed.start()
                self._feeds[path] = feed
            return feed

    def profiles(self) -> list[TraceProfile]:
        """Per-tick figures of every trace of the session (at most ``PROFILE_TRACES``), oldest first."""
        files = sorted(self.trace_files(), key=_mtime)[-PROFILE_TRACES:]
        return [trace_profile(self._feed_for(p), p.parent.name + "/" + p.name) for p in files]

    def select_trace(self, path: Path) -> None:
        self._chosen_trace = path
        self._open(path)

    # -- views --------------------------------------------------------------------------------------------------------
    def session_view(self, now: float) -> SessionView:
        with self.lock:
            if self._view_cache is not None and self._view_cache[0] == self.version:
                return self._view_cache[1]
            view = self._build_view()
            self._view_cache = (self.version, view)
            return view

    def _build_view(self) -> SessionView:
        return build_session_view(self.state, self.plan, self._deltas)

    def _log_path(self, step_key: str | None) -> Path | None:
        if step_key is None:
            return None
        with self.lock:
            st = self.state.steps.get(step_key)
            log = st.log if st is not None else None
        if not log:
            return None
        return Path(log) if Path(log).is_absolute() else self.session_dir / log

    def log_tail(self, step_key: str | None) -> tuple[str, ...]:
        """The last lines of a step's log (progress-event lines left out; they are in the journal)."""
        path = self._log_path(step_key)
        return () if path is None else self._logs.tail(path)

    def log_tails(self, step_key: str | None) -> Tails:
        """Rank 0's (or shard 0's) log, which is the step's, then every other rank's or shard's."""
        path = self._log_path(step_key)
        if path is None:
            return [(None, ())]
        return self._logs.with_ranks(path, "shard" if step_key in self.plan.sharded else "rank")

    def poll(self) -> set[str]:
        changed = super().poll()
        if self.version != self._session_mark:
            self._session_mark = self.version
            changed.add("session")
        return changed

    # -- decisions ----------------------------------------------------------------------------------------------------
    def approve(self, gate_id: str, decision: str, reason: str, *, override: bool = False) -> str:
        """Sign a decision through the supervisor; returns its confirmation, raises ``ApprovalError`` if refused.

        ``override`` is the operator's confirmed request to sign GO at the final gate over unmet pass criteria."""
        with self.lock:
            gate = self.state.gates.get(gate_id)
            evidence_sha = gate.evidence_sha256 if gate is not None else None
        data = supervisor_request(
            self.session_dir,
            self.control_socket,
            "approve",
            gate=gate_id,
            decision=decision,
            operator=self.operator,
            reason=reason,
            evidence_sha256=evidence_sha,
            key_fingerprint=self.key_fingerprint,
            role=self.role,
            override=override or None,
        )
        return signed_message(data, gate_id, decision, self.operator)

    def step_action(self, op: str, step: str, reason: str) -> str:
        """Retry or cancel a step through the supervisor (approvers only; the journal records the operator)."""
        if op not in ("retry", "cancel"):
            raise ApprovalError(f"unknown step action {op!r}")
        if self.role is not None and self.role != "approver":
            raise ApprovalError(f"refused: {self.operator} has role {self.role!r}; only approvers can {op} steps")
        who = {"step": step, "operator": self.operator, "role": self.role}
        if op == "retry":
            supervisor_request(self.session_dir, self.control_socket, "retry", **who, reason=reason)
        else:
            supervisor_request(self.session_dir, self.control_socket, "cancel", **who)
        return f"{step}: {'retry' if op == 'retry' else 'cancel'} requested by {self.operator}"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
