"""The control socket: a typed, versioned protocol between a running supervisor and its clients.

Transport: a Unix stream socket ``control.sock`` in the session folder (mode 0600; when the path is too long for
``AF_UNIX`` the socket lives in a private temp folder and ``control.path`` in the session folder names it).
Framing: one JSON object per line, both ways.

Requests (``Request``): ``{"v": 1, "id": <int>, "op": <op>, ...}`` with ``op`` one of

- ``hello``: protocol check; the reply carries ``version`` and the session id.
- ``status``: the ``phasef status --json`` object.
- ``state``: the full ``SessionState`` (what a TUI renders).
- ``approve``: ``gate``, ``decision`` (``go``/``no-go``), ``operator``, ``reason``, optional ``evidence_sha256``
  (the evidence hash the operator saw; a stale view is refused), ``key_fingerprint``, ``role`` and ``override``
  (``true`` to sign GO at the final gate over an unmet pass criterion; without it such a GO is refused).
- ``cancel``: optional ``step`` (else the whole run), ``operator``, ``role``.
- ``retry``: ``step`` (a failed or cancelled step of the running run), ``operator``, ``role``, optional ``reason``.
- ``subscribe``: after the reply, the server streams ``{"v": 1, "event": <journal event>}`` and
  ``{"v": 1, "log": {"key", "attempt", "lines"}}`` messages until the client disconnects; ``{"v": 1, "lagged": true}``
  tells a slow client that messages were dropped (re-read the state).

Replies (``Reply``): ``{"v": 1, "id": <same>, "ok": true, "data": {...}}`` or ``{"v": 1, "id": ..., "ok": false,
"error": "..."}``. A request with another ``v`` is refused with an error naming the supported version.

Every malformed request (invalid UTF-8, not JSON, nested too deep, not an object, unknown fields or version, a line
longer than ``MAX_LINE``) gets an ``ok: false`` reply, with the request's ``id`` echoed when it can be read, and the
connection stays open for the next request. Nothing a client sends makes the server log a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.engine import Engine
from pipeline.errors import ControlError
from pipeline.fsio import atomic_write_text
from pipeline.session_paths import POINTER_NAME as POINTER_NAME
from pipeline.session_paths import SOCKET_NAME as SOCKET_NAME
from pipeline.session_paths import socket_path as socket_path

PROTOCOL_VERSION = 1
MAX_UNIX_PATH = 100
MAX_LINE = 1 << 20
MAX_ID_CHARS = 200

log = logging.getLogger(__name__)

Op = Literal["hello", "status", "state", "approve", "cancel", "retry", "subscribe"]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    v: int = PROTOCOL_VERSION
    id: int = 0
    op: Op
    gate: str | None = None
    decision: Literal["go", "no-go"] | None = None
    operator: str | None = None
    reason: str | None = None
    evidence_sha256: str | None = None
    key_fingerprint: str | None = None
    role: str | None = None
    step: str | None = None
    override: bool | None = None


class Reply(BaseModel):
    v: int = PROTOCOL_VERSION
    id: int | str = 0  # a string only when echoing a malformed request's string id
    ok: bool
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


def _choose_socket_path(session_dir: Path) -> Path:
    direct = session_dir / SOCKET_NAME
    if len(str(direct)) <= MAX_UNIX_PATH:
        (session_dir / POINTER_NAME).unlink(missing_ok=True)
        return direct
    digest = hashlib.sha256(str(session_dir).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"phasef-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{digest}.sock"
    atomic_write_text(session_dir / POINTER_NAME, str(path))
    return path


class ControlServer:
    """Serves one engine's session on its Unix socket."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.path = _choose_socket_path(engine.session_dir)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self.path.unlink(missing_ok=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await _read_line(reader)
                except _LineTooLong:
                    reply, subscribe = Reply(ok=False, error=f"request line longer than {MAX_LINE} bytes"), False
                else:
                    if line is None:
                        break
                    try:
                        reply, subscribe = self._handle(line)
                    except Exception as exc:  # a defect must cost one reply, never the connection or a traceback
                        log.error("control request failed: %s: %s", type(exc).__name__, exc)
                        reply, subscribe = Reply(ok=False, error=f"internal error: {type(exc).__name__}: {exc}"), False
                writer.write(reply.model_dump_json().encode() + b"\n")
                await writer.drain()
                if subscribe:
                    await self._stream(writer, reader)
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _handle(self, line: bytes) -> tuple[Reply, bool]:
        try:
            raw = orjson.loads(line)  # bounded nesting depth; invalid UTF-8 is a decode error, not an exception
        except (orjson.JSONDecodeError, RecursionError) as exc:
            return Reply(ok=False, error=f"not JSON: {exc}"), False
        if not isinstance(raw, dict):
            return Reply(ok=False, error=f"bad request: expected a JSON object, got {_json_type(raw)}"), False
        rid = _readable_id(raw.get("id"))
        if raw.get("v", PROTOCOL_VERSION) != PROTOCOL_VERSION:
            return Reply(id=rid, ok=False, error=f"protocol version {PROTOCOL_VERSION} only"), False
        try:
            req = Request.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            return Reply(id=rid, ok=False, error=f"bad request: field '{field}': {err['msg']}"), False
        eng = self.engine
        try:
            if req.op == "hello":
                return Reply(
                    id=req.id, ok=True, data={"version": PROTOCOL_VERSION, "session": eng.state.session}
                ), False
            if req.op == "status":
                return Reply(id=req.id, ok=True, data=eng.state.public()), False
            if req.op == "state":
                return Reply(id=req.id, ok=True, data=eng.state.model_dump(mode="json")), False
            if req.op == "approve":
                if not req.gate or not req.decision:
                    raise ControlError("approve needs 'gate' and 'decision'")
                data = eng.decide(
                    req.gate,
                    req.decision,
                    req.operator or "",
                    req.reason or "",
                    evidence_sha256=req.evidence_sha256,
                    key_fingerprint=req.key_fingerprint,
                    role=req.role,
                    override=bool(req.override),
                )
                return Reply(id=req.id, ok=True, data=data), False
            if req.op == "cancel":
                data = eng.cancel(req.step, operator=req.operator or "unknown", role=req.role)
                return Reply(id=req.id, ok=True, data=data), False
            if req.op == "retry":
                if not req.step:
                    raise ControlError("retry needs 'step'")
                data = eng.retry(req.step, operator=req.operator or "", role=req.role, reason=req.reason or "")
                return Reply(id=req.id, ok=True, data=data), False
            return Reply(id=req.id, ok=True, data={"last_seq": eng.state.last_seq}), True
        except ControlError as exc:
            return Reply(id=req.id, ok=False, error=str(exc)), False

    async def _stream(self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
        q = self.engine.subscribe()
        gone = asyncio.create_task(reader.read(1))
        try:
            while not gone.done():
                get = asyncio.create_task(q.get())
                await asyncio.wait([get, gone], return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    break
                msg = {"v": PROTOCOL_VERSION, **get.result()}
                writer.write(json.dumps(msg, default=str).encode() + b"\n")
                await writer.drain()
        finally:
            gone.cancel()
            self.engine.unsubscribe(q)


class _LineTooLong(Exception):
    """A request line longer than ``MAX_LINE``; it has been skipped up to its newline."""


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next line (a last line without newline at end of stream too), or None at end of stream.

    A line over the stream's limit is dropped up to its newline in pieces no larger than the limit (so memory stays
    bounded) and reported as ``_LineTooLong``; the next request on the connection is then read normally.
    """
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial or None
    except asyncio.LimitOverrunError as exc:
        skip = exc.consumed
    while True:
        try:
            await reader.readexactly(skip)
            await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as exc:
            skip = exc.consumed
            continue
        raise _LineTooLong


def _readable_id(value: Any) -> int | str:
    """A malformed request's id, to echo: an int, or a short string; otherwise 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) <= MAX_ID_CHARS:
        return value
    return 0


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


class ControlClient:
    """Blocking client for CLI commands (one request, one reply)."""

    def __init__(self, session_dir: Path, timeout: float = 10.0) -> None:
        self.path = socket_path(session_dir)
        self.timeout = timeout
        self._next = 0

    def available(self) -> bool:
        return self.path.exists()

    def request(self, op: Op, **fields: Any) -> dict[str, Any]:
        """Send one request; return ``data`` or raise ``ControlError`` with the server's message."""
        self._next += 1
        req = Request(id=self._next, op=op, **fields)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(str(self.path))
            sock.sendall(req.model_dump_json(exclude_none=True).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        reply = Reply.model_validate_json(buf)
        if not reply.ok:
            raise ControlError(reply.error or "refused")
        return reply.data


async def subscribe(session_dir: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a subscription; read messages with ``reader.readline()`` (one JSON object per line)."""
    reader, writer = await asyncio.open_unix_connection(str(socket_path(session_dir)), limit=MAX_LINE)
    writer.write(Request(id=1, op="subscribe").model_dump_json().encode() + b"\n")
    await writer.drain()
    first = await reader.readline()
    reply = Reply.model_validate_json(first)
    if not reply.ok:
        raise ControlError(reply.error or "refused")
    return reader, writer
