"""Property tests of the control protocol on a real socket server: any bytes, any JSON, any request-shaped object
gets exactly one well-formed reply, never an internal error, and the connection keeps serving."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import parse_config
from pipeline.control import ControlServer
from pipeline.engine import Engine
from tests.spine_helpers import work_then_gate_plan

PLAN = work_then_gate_plan("true")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["v", "id", "op", "gate", "decision", "operator", "reason", "evidence_sha256", "key_fingerprint", "role"]
request_like = st.dictionaries(
    st.sampled_from([*FIELDS, "step", "extra"]),
    st.sampled_from([1, 2, 0, -1, "1", "hello", "status", "state", "approve", "cancel", "A.gate", "go", "no-go"])
    | json_values,
    max_size=6,
)


class Client:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(str(path))
        self.buf = b""

    def ask(self, line: bytes) -> dict[str, Any]:
        self.sock.sendall(line + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.buf += chunk
        reply, _, self.buf = self.buf.partition(b"\n")
        obj = json.loads(reply)
        assert isinstance(obj, dict)
        return obj


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("ctl")
    engine = Engine(parse_config(PLAN), session_dir=root / "s", project_dir=root)
    loop = asyncio.new_event_loop()
    control = ControlServer(engine)
    loop.run_until_complete(control.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield control.path
    asyncio.run_coroutine_threadsafe(control.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    engine.journal.close()


@pytest.fixture(scope="module")
def client(server: Path) -> Iterator[Client]:
    c = Client(server)
    yield c
    c.sock.close()


def _check(reply: dict[str, Any], client: Client) -> None:
    assert reply["v"] == 1 and isinstance(reply["ok"], bool), reply
    if not reply["ok"]:
        assert isinstance(reply["error"], str) and reply["error"], reply
        assert not reply["error"].startswith("internal error"), reply
    hello = client.ask(b'{"v": 1, "id": 5, "op": "hello"}')
    assert hello["ok"] is True and hello["id"] == 5


@given(st.binary(max_size=2000).map(lambda b: b.replace(b"\n", b" ")))
def test_any_bytes_get_one_reply(client: Client, data: bytes) -> None:
    _check(client.ask(data), client)


@given(json_values)
def test_any_json_gets_one_reply(client: Client, value: Any) -> None:
    reply = client.ask(json.dumps(value).encode())
    if not isinstance(value, dict):
        assert reply["ok"] is False and "expected a JSON object" in reply["error"]
    _check(reply, client)


@given(request_like)
def test_any_request_shaped_object_gets_one_reply(client: Client, request: dict[str, Any]) -> None:
    reply = client.ask(json.dumps(request).encode())
    rid = request.get("id")
    if not reply["ok"] and (type(rid) is int or (isinstance(rid, str) and len(rid) <= 200)):
        assert reply["id"] == rid, (request, reply)  # a readable id is echoed
    _check(reply, client)
