"""Shared builders for the TUI tests: canonical trace records, small trace files, constructed session state."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from phasef_tui.data_source import DataSource
from phasef_tui.trace_feed import TraceFeed
from widgets.session_view import (
    DeltaRow,
    EvidenceView,
    GateView,
    MetricView,
    SessionView,
    StageView,
    StepView,
    VerdictView,
)

FIXED_NOW = 1_760_000_600.0
"""The clock of constructed sessions (durations of running steps are measured against it)."""


def start(episode: str, ts: float = 1_760_000_000.0) -> dict[str, Any]:
    return {"schema": "phasef.dirty_trace/1", "kind": "episode_start", "episode": episode, "ts": ts, "run_id": "r"}


def end(episode: str, outcome: str, ticks: int, ts: float = 1_760_000_100.0) -> dict[str, Any]:
    return {
        "schema": "phasef.dirty_trace/1",
        "kind": "episode_end",
        "episode": episode,
        "ts": ts,
        "run_id": "r",
        "outcome": outcome,
        "ticks": ticks,
    }


def tick(episode: str, t: int, outcome: str = "ok", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "schema": "phasef.dirty_trace/1",
        "kind": "tick",
        "episode": episode,
        "run_id": "r",
        "ts": 1_760_000_000.0 + t,
        "tick": t,
        "actor": "model",
        "latency_s": 0.25 + t / 100,
        "context_chars": 1000 + 10 * t,
        "outcome": outcome,
        "progress": outcome == "ok",
        "action": {"tool": "read_file", "args": {"path": f"f{t}.py"}},
        "raw_output": f'{{"tool": "read_file", "args": {{"path": "f{t}.py"}}}}',
    }
    rec.update(extra)
    return rec


CONTEXT = [
    {"role": "system", "content": "You are a coding agent. Answer with one JSON action."},
    {"role": "user", "content": "Observation: tests/test_io.py failed"},
]


def sample_records() -> list[dict[str, Any]]:
    """Two episodes with every kind the viewer filters on; line numbers (0-based) are noted for assertions.

    0 start e1 | 1 ok | 2 schema error (chain c1 failure) | 3 repair attempt | 4 recovered | 5-7 the same failing
    run_tests three times (thrash at 7) | 8 deadlock trap | 9 end e1 | 10 start e2 | 11 ok | 12 timeout, trap hang
    (chain c1 failure) | 13 death (chain c1 death) | 14 end e2 death
    """
    failing = {"tool": "run_tests", "args": {"path": "tests/test_io.py"}}
    return [
        start("e1"),
        tick("e1", 0),
        tick(
            "e1",
            1,
            "error",
            error_class="SchemaViolation",
            schema_error="missing field 'tool'",
            action=None,
            raw_output="I think I should read the file",
            chain_id="c1",
            chain_role="failure",
            context=CONTEXT,
            progress=False,
        ),
        tick(
            "e1",
            2,
            "error",
            actor="repair",
            recovery="schema_repair",
            error_class="SchemaViolation",
            chain_id="c1",
            chain_role="attempt",
            progress=False,
        ),
        tick("e1", 3, chain_id="c1", chain_role="recovered", recovery="model"),
        tick("e1", 4, "error", error_class="CheckFailed", action=failing, progress=False),
        tick("e1", 5, "error", error_class="CheckFailed", action=failing, progress=False),
        tick("e1", 6, "error", error_class="CheckFailed", action=failing, progress=False),
        tick("e1", 7, "error", error_class="Deadlock", trap="deadlock", progress=False),
        end("e1", "success", 8),
        start("e2"),
        tick("e2", 0),
        tick("e2", 1, "timeout", error_class="Timeout", trap="hang", chain_id="c1", chain_role="failure"),
        tick("e2", 2, "death", error_class="Fatal", trap="fatal", chain_id="c1", chain_role="death"),
        end("e2", "death", 3),
    ]


def write_trace(path: Path, records: list[dict[str, Any]] | list[bytes], mode: str = "wb") -> Path:
    with open(path, mode) as fh:
        for rec in records:
            fh.write(rec if isinstance(rec, bytes) else orjson.dumps(rec) + b"\n")
    return path


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    write_trace(path, records, mode="ab")


def many_ticks(episode: str, count: int, first: int = 0) -> list[dict[str, Any]]:
    return [tick(episode, t) for t in range(first, first + count)]


def open_feed(path: Path, follow: bool = False) -> TraceFeed:
    feed = TraceFeed(path, follow=follow)
    if not follow:
        feed.start()
        assert feed.wait_indexed(10)
    return feed


async def until(pilot: Any, predicate: Any, timeout: float = 5.0) -> bool:
    """In a Pilot test: wait (letting the app run) until ``predicate()`` holds, at most ``timeout`` seconds."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        await pilot.pause(0.05)
    return bool(predicate())


def plain_text(renderable: Any, width: int = 100) -> str:
    """A rich renderable (a widget's ``content``) as the plain text a terminal ``width`` columns wide shows."""
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    end_at = time.monotonic() + timeout
    while time.monotonic() < end_at:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


# -- a session, constructed -------------------------------------------------------------------------------------


def constructed_session() -> SessionView:
    """A session in Stage B: A done (one retried step), the baseline gate waiting with two auditor verdicts."""
    stages = (
        StageView(
            "A",
            "Baseline (API)",
            (
                StepView("A.serve", "A", "serve", "serve the model", "shell", "succeeded", 1, duration_s=4.2),
                StepView("A.eval", "A", "eval", "baseline eval", "api", "succeeded", 2, retries=2, duration_s=125.0),
            ),
        ),
        StageView(
            "B",
            "Recursive audit",
            (
                StepView("B.audit", "B", "audit", "dual audit", "audit", "succeeded", 1, duration_s=31.5),
                StepView(
                    "B.sign_off",
                    "B",
                    "sign_off",
                    "operator sign-off",
                    "gate",
                    "waiting",
                    1,
                    started_at=FIXED_NOW - 42,
                ),
            ),
        ),
        StageView(
            "C",
            "Data refresh",
            (StepView("C.extract", "C", "extract", "extract journal", "builtin", "pending"),),
        ),
    )
    verdicts = (
        VerdictView(
            "gemini",
            "primary",
            "NO-GO",
            findings=("ticksObserved 87 < 100",),
            blockers=("baseline gate failed: too few ticks",),
            judged_sha256="ab" * 32,
        ),
        VerdictView("claude", "recursive", "NO-GO", findings=("agrees with the primary",), judged_sha256="ab" * 32),
    )
    gate = GateView(
        id="B.sign_off",
        title="operator sign-off",
        state="waiting",
        prompt="Accept the baseline audit?",
        evidence=(
            EvidenceView("report.json", "artifacts/A/eval/eval_report.json", "1f" * 32),
            EvidenceView("dirty_trace.jsonl", "artifacts/A/eval/dirty_trace.jsonl", "2e" * 32),
            EvidenceView("verdict.json", "audit:verdict.json", None),
        ),
        evidence_sha256="cd" * 32,
        audit_verdict="NO-GO",
        verdicts=verdicts,
    )
    return SessionView(
        name="demo",
        state="waiting",
        stages=stages,
        gates=(gate,),
        metrics=(
            MetricView("A.eval ticksObserved", "87", "A.eval"),
            MetricView("A.eval deaths", "3", "A.eval"),
            MetricView("A.eval latencyP50", "0.41", "A.eval"),
        ),
        deltas=(
            DeltaRow("latency p50", 0.41, 0.33, "s", True, True),
            DeltaRow("schema violation rate", 0.12, 0.15, "", True, False),
            DeltaRow("solved", 12, 15, "", False, None),
        ),
        residual_blockers=("schema violation rate is worse",),
        loss=tuple((float(s), 2.5 / (1 + s / 20)) for s in range(0, 200, 10)),
        current_step="B.sign_off",
    )


class ConstructedSource(DataSource):
    """A data source over constructed state (and optionally a trace feed): screens are views, this is the state."""

    def __init__(
        self, view: SessionView, feed: TraceFeed | None = None, logs: dict[str, tuple[str, ...]] | None = None
    ):
        super().__init__()
        self.view = view
        self._feed = feed
        self.logs = logs or {}
        self.title = f"session {view.name} · alice"
        self.operator = "alice"
        self.version = 0
        self._mark = -1

    @property
    def has_session(self) -> bool:
        return True

    @property
    def feed(self) -> TraceFeed | None:
        return self._feed

    def session_view(self, now: float) -> SessionView:
        return self.view

    def log_tail(self, step_key: str | None) -> tuple[str, ...]:
        return self.logs.get(step_key or "", ())

    def set_view(self, view: SessionView) -> None:
        self.view = view
        self.version += 1

    def poll(self) -> set[str]:
        changed = super().poll()
        if self.version != self._mark:
            self._mark = self.version
            changed.add("session")
        return changed

    def stop(self) -> None:
        if self._feed is not None:
            self._feed.stop()


# -- a real comparison ------------------------------------------------------------------------------------------


def real_comparison(folder: Path) -> dict[str, Any]:
    """A comparison made by ``pipeline.report.compare`` from two small evaluated runs (30 paired episodes each,
    seeded, so the figures are the same at every run): the document Stage E writes to ``comparison.json``."""
    from pipeline.report.compare import build_comparison
    from tests.test_compare_report import baseline_specs, finetuned_specs, params, write_eval

    write_eval(folder / "base", baseline_specs(), seed=1)
    write_eval(folder / "fine", finetuned_specs(), seed=2)
    return build_comparison(params(folder / "base", folder / "fine"), Path)


def session_with_comparison(folder: Path) -> SessionView:
    """The constructed session with the delta rows and blockers read from a real comparison, as the TUI reads
    ``report/comparison.json``."""
    from dataclasses import replace

    from phasef_tui.session_source import deltas_from

    doc = real_comparison(folder)
    return replace(constructed_session(), deltas=deltas_from(doc), residual_blockers=tuple(doc["residual_blockers"]))


# --- a real program in a pty ------------------------------------------------------------------------------------------


def start_in_pty(
    argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None, rows: int = 40, cols: int = 120
) -> tuple[subprocess.Popen[bytes], int]:
    """``argv`` (``sys.executable`` first when it starts with ``-``) in a new session on a ``cols``x``rows`` pty,
    as in a terminal (TERM xterm-256color, ``env`` added); returns the process and the pty's master end."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, *argv] if argv[0].startswith("-") else list(argv),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env={**os.environ, "TERM": "xterm-256color", **(env or {})},
        start_new_session=True,
    )
    os.close(slave)
    return proc, master


def read_pty(
    proc: subprocess.Popen[bytes],
    master: int,
    done: Callable[[bytes], bool] = lambda _out: False,
    timeout: float = 60,
    react: Callable[[bytes, int], None] | None = None,
) -> bytes:
    """What the program writes, until ``done(output)``, the end of its output or ``timeout``; ``react(output,
    master)`` after each read (to type keys). The pty is drained all along (a full pty would block the program);
    at the end the program's process group is killed and the pty closed."""
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not done(bytes(output)):
            if select.select([master], [], [], 0.1)[0]:
                try:
                    data = os.read(master, 1 << 16)
                except OSError:  # (the program is gone and the pty with it)
                    break
                if not data:
                    break
                output += data
                if react is not None:
                    react(bytes(output), master)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # (gone between the two)
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        os.close(master)
    return bytes(output)
