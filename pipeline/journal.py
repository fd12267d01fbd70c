"""The session journal: an append-only JSONL file of events, the only source of truth of a session.

Every state change is appended, flushed and fsynced before the engine acts on it. Replaying the file rebuilds the
session state (``pipeline.state``). A crash can leave a torn last line (no trailing newline): a writer that opens
the journal moves those bytes to ``journal.torn-<offset>.bin`` beside it and journals that it did, so nothing is
silently dropped; a reader reports it and carries on. A garbage line in the middle is reported with its line number
and skipped.

Only one process writes a journal at a time: writers hold an exclusive ``flock`` on ``session.lock``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, Field, ValidationError

from pipeline.events import EVENT_TYPES, SCHEMA_VERSION, TYPED_EVENT, TypedEvent
from pipeline.fsio import atomic_write_bytes, open_regular
from pipeline.problems import Problem
from pipeline.session_paths import JOURNAL_NAME as JOURNAL_NAME  # (its name, here since the journal came first)

LOCK_NAME = "session.lock"
MAX_EVENT_BYTES = 64 * 2**20


class Event(BaseModel):
    """One journal line as written; :meth:`typed` gives the typed event (``pipeline.events``)."""

    v: int = 1
    seq: int
    ts: str = Field(description="UTC time, ISO 8601")
    type: str
    stage: str | None = None
    step: str | None = None
    attempt: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str | None:
        return f"{self.stage}.{self.step}" if self.stage and self.step else None

    def typed(self) -> TypedEvent:
        """The event as its type's model; ``ValidationError`` if it does not fit (the readers report those)."""
        return TYPED_EVENT.validate_python(
            {
                "v": self.v,
                "seq": self.seq,
                "ts": self.ts,
                "type": self.type,
                "stage": self.stage,
                "step": self.step,
                "attempt": self.attempt,
                "payload": self.payload,
            }
        )


JournalProblem = Problem
"""A journal line that could not be used (kept under this name for its readers)."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _decode(raw: bytes, file: str, number: int) -> Event | JournalProblem:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return JournalProblem(file, number, f"not valid JSON ({exc})")
    if not isinstance(obj, dict):
        return JournalProblem(file, number, "not a JSON object")
    try:
        event = Event.model_validate(obj)
    except ValidationError as exc:
        return JournalProblem(file, number, _first_error(exc))
    if event.v > SCHEMA_VERSION:
        return JournalProblem(
            file, number, f"event schema v{event.v} is newer than this phasef reads (v{SCHEMA_VERSION}); skipped"
        )
    if event.type not in EVENT_TYPES:
        return JournalProblem(file, number, f"unknown event type {event.type!r} (from a newer phasef?); skipped")
    if event.type == "step_progress":
        return event  # free-form payload, nothing past the fields just checked; the bulk of a journal, kept fast
    try:
        event.typed()  # the line as written, with the envelope's defaults (a line without a payload has none)
    except ValidationError as exc:
        return JournalProblem(file, number, f"{event.type}: {_first_error(exc)}")
    return event


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    if len(loc) > 1 and loc[0] in EVENT_TYPES:  # the union's tag, not a field
        loc = loc[1:]
    field = ".".join(loc) or "event"
    return f"field '{field}': {err['msg']}"


def read_journal(path: Path, start_offset: int = 0) -> Iterator[Event | JournalProblem]:
    """Yield every event of the file (and a problem for each bad line), in order, without changing the file.

    A last line without a newline is reported as torn (it may be a write in flight or a crash's remains). A line
    longer than ``MAX_EVENT_BYTES`` is reported and skipped without being held in memory; a FIFO or a device in
    place of the journal is refused (``fsio.NotARegularFile``) before anything is read.
    """
    file = str(path)
    with open_regular(path) as fh:
        fh.seek(start_offset)
        number = 0
        while raw := fh.readline(MAX_EVENT_BYTES + 1):
            number += 1
            if len(raw) > MAX_EVENT_BYTES and not raw.endswith(b"\n"):
                skipped = len(raw)
                while more := fh.readline(1 << 20):
                    skipped += len(more)
                    if more.endswith(b"\n"):
                        break
                else:
                    yield JournalProblem(file, number, f"torn last line ({skipped} bytes without a newline)")
                    return
                yield JournalProblem(file, number, f"line too long ({skipped} bytes > {MAX_EVENT_BYTES}); skipped")
                continue
            if not raw.endswith(b"\n"):
                yield JournalProblem(file, number, f"torn last line ({len(raw)} bytes without a newline)")
                return
            if raw.strip():
                yield _decode(raw, file, number)


class JournalTail:
    """Incremental reader of a growing journal: call ``poll()`` to get events appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.line = 0
        self._partial = b""

    def poll(self) -> list[Event | JournalProblem]:
        out: list[Event | JournalProblem] = []
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self.offset:  # replaced or truncated: start over
                    self.offset, self.line, self._partial = 0, 0, b""
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return out
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            self.line += 1
            if raw.strip():
                out.append(_decode(raw, str(self.path), self.line))
        return out


class SessionLocked(Exception):
    """Another process holds the session's writer lock (a supervisor is running)."""


class Journal:
    """Writer side. ``append`` returns the event after it is durable on disk."""

    def __init__(self, session_dir: Path, *, fsync: bool = True, wait_lock: bool = False) -> None:
        self.session_dir = session_dir
        self.path = session_dir / JOURNAL_NAME
        self.fsync = fsync
        session_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(session_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | (0 if wait_lock else fcntl.LOCK_NB))
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise SessionLocked(f"{session_dir} is held by another process") from exc
        self.problems: list[JournalProblem] = []
        self.seq = 0
        repaired = self._scan_and_repair()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if repaired is not None:
            self.append("journal_repaired", payload=repaired)

    def _scan_and_repair(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        for item in read_journal(self.path):
            if isinstance(item, Event):
                self.seq = max(self.seq, item.seq)
            else:
                self.problems.append(item)
        size = self.path.stat().st_size
        with open(self.path, "rb+") as fh:
            if size == 0:
                return None
            fh.seek(max(0, size - 1))
            if fh.read(1) == b"\n":
                return None
            fh.seek(0)
            data = fh.read()
            cut = data.rfind(b"\n") + 1
            torn = data[cut:]
            side = self.session_dir / f"journal.torn-{cut}.bin"
            atomic_write_bytes(side, torn)
            fh.truncate(cut)
            os.fsync(fh.fileno())
        line = data.count(b"\n") + 1
        return {"torn_bytes": len(torn), "line": line, "saved_to": side.name}

    def append(
        self,
        type: str,
        *,
        stage: str | None = None,
        step: str | None = None,
        attempt: int | None = None,
        payload: dict[str, Any] | None = None,
        sync: bool = True,
    ) -> Event:
        """Append one event; with ``sync`` (the default) it is fsynced before this returns."""
        self.seq += 1
        event = Event(
            v=SCHEMA_VERSION,
            seq=self.seq,
            ts=utc_now(),
            type=type,
            stage=stage,
            step=step,
            attempt=attempt,
            payload=payload or {},
        )
        data = orjson.dumps(event.model_dump(), option=orjson.OPT_NON_STR_KEYS, default=str) + b"\n"
        os.write(self._fd, data)
        if sync and self.fsync:
            os.fsync(self._fd)
        return event

    def sync(self) -> None:
        """Make every event appended with ``sync=False`` durable (batching: one fsync for many events)."""
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_locked(session_dir: Path) -> bool:
    """Whether a writer (a running supervisor) holds the session."""
    lock = session_dir / LOCK_NAME
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
