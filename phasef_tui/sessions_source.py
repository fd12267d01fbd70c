"""All sessions under a folder as the TUI sees them: the Sessions table, two marked for comparison, and the result.

Rows come from ``pipeline.report.sessions`` (each journal replayed) and are re-read on demand; a comparison runs
``pipeline.report.cross`` in a background thread (the bootstrap takes a moment) and the Compare screen shows it when
it is done. Choosing a session to open ends the app with ``chosen`` set; the caller attaches to it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from phasef_tui.data_source import DataSource

CHANGED_SESSIONS = "sessions"
CHANGED_COMPARISON = "comparison"

Rows = Callable[[Path], list[dict[str, Any]]]
Comparer = Callable[[str, str, Path], dict[str, Any]]


def compare_sessions(a: str, b: str, root: Path) -> dict[str, Any]:
    """The cross-session comparison of two references (refused, with reasons, when they cannot be compared)."""
    from pipeline.report.cross import RefError, compare_resolved, resolve_pair

    try:
        run_a, run_b = resolve_pair(a, b, root)
    except (RefError, OSError) as exc:
        return {"status": "refused", "refusal": [str(exc)], "a": {"ref": a}, "b": {"ref": b}, "pairs": 0, "metrics": []}
    return compare_resolved(run_a, run_b)


def read_rows(root: Path) -> list[dict[str, Any]]:
    from pipeline.report.sessions import list_rows

    return list_rows(root)


@dataclass
class Comparison:
    a: str
    b: str
    state: Literal["running", "done"] = "running"
    doc: dict[str, Any] = field(default_factory=dict)


class SessionsSource(DataSource):
    """Every session under ``root``; ``rows`` and ``comparer`` can be given (tests build them)."""

    screens = ("sessions", "compare")

    def __init__(
        self,
        root: Path,
        *,
        operator: str | None = None,
        rows: Rows = read_rows,
        comparer: Comparer = compare_sessions,
        background: bool = True,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.operator = operator
        self.title = f"sessions in {self.root}"
        self._read_rows = rows
        self._comparer = comparer
        self._background = background
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self.loaded = False
        self.marked: list[str] = []
        self.comparison: Comparison | None = None
        self.chosen: Path | None = None
        self.replay = False
        self._version = 0
        self._seen = -1
        self._compare_version = 0
        self._compare_seen = -1

    # -- rows -----------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Re-read every journal (in the background: a large folder must not freeze the keys)."""
        if self._background:
            threading.Thread(target=self._load, name="sessions-reader", daemon=True).start()
        else:
            self._load()

    def _load(self) -> None:
        rows = self._read_rows(self.root)
        with self._lock:
            self._rows = rows
            self.loaded = True
            ids = {r["id"] for r in rows}
            self.marked = [m for m in self.marked if m in ids]
            self._version += 1

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._rows)

    def path_of(self, session_id: str) -> Path:
        with self._lock:
            for row in self._rows:
                if row["id"] == session_id:
                    return Path(row.get("path") or self.root / session_id)
        return self.root / session_id

    def toggle_mark(self, session_id: str) -> list[str]:
        """Mark a session for comparison (two at most: a third replaces the oldest mark), or unmark it."""
        with self._lock:
            if session_id in self.marked:
                self.marked.remove(session_id)
            else:
                self.marked = [*self.marked, session_id][-2:]
            self._version += 1
            return list(self.marked)

    # -- comparison -------------------------------------------------------------------------------------------------
    def compare(self, a: str, b: str) -> None:
        job = Comparison(a, b)
        with self._lock:
            self.comparison = job
            self._compare_version += 1
        if self._background:
            threading.Thread(target=self._run_compare, args=(job,), name="compare", daemon=True).start()
        else:
            self._run_compare(job)

    def _run_compare(self, job: Comparison) -> None:
        try:
            doc = self._comparer(str(self.path_of(job.a)), str(self.path_of(job.b)), self.root)
        except Exception as exc:  # shown on the screen rather than lost in a thread
            doc = {"status": "refused", "refusal": [f"comparison failed: {type(exc).__name__}: {exc}"], "metrics": []}
        with self._lock:
            if self.comparison is job:
                job.doc = doc
                job.state = "done"
                self._compare_version += 1

    def open(self, session_id: str, *, replay: bool = False) -> Path:
        """Choose a session to attach to (or to replay from its first event) once the app ends."""
        self.chosen = self.path_of(session_id)
        self.replay = replay
        return self.chosen

    # -- change detection -------------------------------------------------------------------------------------------
    def poll(self) -> set[str]:
        changed = super().poll()
        with self._lock:
            if self._version != self._seen:
                self._seen = self._version
                changed.add(CHANGED_SESSIONS)
            if self._compare_version != self._compare_seen:
                self._compare_seen = self._compare_version
                changed.add(CHANGED_COMPARISON)
        return changed
