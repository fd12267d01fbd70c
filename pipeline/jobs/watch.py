"""Watching one running job: its log into the journal, its timeout and cancel, TERM then KILL, its outcome.

Works on any :class:`~pipeline.jobs.executor.Job`; the executor decides where the process runs.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.jobs.context import EVENT_PREFIX
from pipeline.jobs.executor import Job
from pipeline.recorder import Recorder

TERM_GRACE_S = 10.0
POLL_S = 0.05
LOG_LINES_PER_POLL = 50
PROGRESS_PER_POLL = 40
LOG_READ_BYTES = 8 << 20


@dataclass
class StepOutcome:
    ok: bool
    error: str | None = None
    exit_code: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    timed_out: bool = False


class LogTail:
    """Reads a job's log as it grows (from an offset, through the job); splits structured event lines from plain."""

    def __init__(self, read: Callable[[int, int], bytes], skip_events_until: int = 0) -> None:
        self.read = read
        self.offset = 0
        self.line = 0
        self.partial = b""
        self.skip_until = skip_events_until
        self.recent: list[str] = []

    def poll(self, final: bool = False) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
        data = self.read(self.offset, LOG_READ_BYTES)
        if not data and not (final and self.partial):
            return [], []
        self.offset += len(data)
        data = self.partial + data
        parts = data.split(b"\n")
        self.partial = b"" if final else parts.pop()
        lines: list[str] = []
        events: list[tuple[int, dict[str, Any]]] = []
        prefix = EVENT_PREFIX.encode()
        for raw in parts:
            if not raw and final:
                continue
            self.line += 1
            if raw.startswith(prefix):
                if self.line <= self.skip_until:
                    continue
                try:
                    obj = orjson.loads(raw[len(prefix) :])
                except orjson.JSONDecodeError:
                    lines.append(raw.decode("utf-8", "replace"))
                    continue
                if isinstance(obj, dict):
                    events.append((self.line, obj))
                continue
            lines.append(raw.decode("utf-8", "replace"))
        self.recent = (self.recent + lines)[-5:]
        return lines, events

    def last_lines_hint(self) -> str:
        return (": " + " | ".join(line[:200] for line in self.recent[-3:])) if self.recent else ""


class JobWatch:
    """Follows one attempt of one step until its job ends (or is stopped), journaling what it prints."""

    def __init__(self, recorder: Recorder, key: str, attempt: int, job: Job, skip_events_until: int = 0) -> None:
        self.recorder = recorder
        self.key = key
        self.attempt = attempt
        self.job = job
        self.tail = LogTail(job.read_log, skip_events_until)

    async def run(
        self,
        *,
        deadline: float | None,
        timeout_s: float | None,
        stop_requested: Callable[[], bool],
        function_step: bool,
    ) -> StepOutcome:
        """Watch until the job ends; on the deadline or a stop request TERM its group, KILL it after the grace."""
        job = self.job
        timed_out = cancelled = False
        term_sent_at: float | None = None
        while True:
            self.drain()
            if await job.wait(0):
                break
            now = time.monotonic()
            stop = stop_requested()
            want_stop = (deadline is not None and now >= deadline) or stop
            if want_stop and term_sent_at is None:
                timed_out = deadline is not None and now >= deadline and not stop
                cancelled = not timed_out
                job.signal(signal.SIGTERM)
                term_sent_at = now
            elif term_sent_at is not None and now - term_sent_at > TERM_GRACE_S:
                job.signal(signal.SIGKILL)
            await job.wait(POLL_S * 4)
        if term_sent_at is not None:
            # the main process is gone but the step may still be saving its state: give the group the grace time
            while job.group_alive() and time.monotonic() - term_sent_at < TERM_GRACE_S:
                self.drain()
                await asyncio.sleep(POLL_S)
            job.signal(signal.SIGKILL)  # leave no grandchildren behind
        self.drain(final=True)
        exit_code = job.exit_status()
        if timed_out:
            return StepOutcome(False, error=f"timed out after {timeout_s:g} s", exit_code=exit_code, timed_out=True)
        if cancelled:
            return StepOutcome(False, error="cancelled", exit_code=exit_code, cancelled=True)
        result = job.result() if function_step else {}
        if exit_code == 0:
            return StepOutcome(True, exit_code=0, summary=result.get("summary", {}))
        hint = self.tail.last_lines_hint()
        error = result.get("error") or f"exit status {exit_code}" + hint
        if exit_code is None:
            error = "the step's process ended without an exit status" + hint
        return StepOutcome(False, error=error, exit_code=exit_code)

    def drain(self, final: bool = False) -> None:
        """Journal the structured progress lines the step printed since the last poll, with one fsync per batch.

        Batching is safe here: progress events inform, they decide nothing. Each carries the log line it came from
        (``_line``), and the log itself is the durable copy, so after a crash a reattached watch re-reads the log
        and journals exactly the events past the last one on disk (none lost, none twice).
        """
        lines, events = self.tail.poll(final)
        key, attempt = self.key, self.attempt
        if events:
            if len(events) > PROGRESS_PER_POLL:  # coalesce a flood: keep an even sample and the newest
                step = len(events) / PROGRESS_PER_POLL
                events = [events[int(i * step)] for i in range(PROGRESS_PER_POLL - 1)] + [events[-1]]
            for number, payload in events:
                payload["_attempt"] = attempt
                payload["_line"] = number
                self.recorder.record("step_progress", key, attempt=attempt, payload=payload, sync=False)
            self.recorder.sync()
        if lines and self.recorder.subscribers:
            shown = lines[-LOG_LINES_PER_POLL:]
            if len(lines) > len(shown):
                shown.insert(0, f"... {len(lines) - len(shown)} more lines in the log")
            self.recorder.broadcast({"log": {"key": key, "attempt": attempt, "lines": shown}})
