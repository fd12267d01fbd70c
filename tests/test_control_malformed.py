"""Malformed requests on the real control socket of a real supervisor: each gets an ``ok: false`` reply (id echoed
when readable), the connection stays usable, and the supervisor's output holds no traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from pipeline.control import MAX_LINE, socket_path
from tests.spine_helpers import ONE_GATE_PLAN, has_event, headless_run, wait_for, write_plan

MALFORMED: list[tuple[bytes, object, str]] = [
    (b'{"v": 1, "id": 3, "op": "hel\xff\xfelo"}\n', 0, "not JSON"),
    (bytes(range(256)).replace(b"\n", b"") + b"\n", 0, "not JSON"),
    (b"[" * 100_000 + b"]" * 100_000 + b"\n", 0, "not JSON"),
    (b'{"v": 2, "id": "abc", "op": "status"}\n', "abc", "protocol version 1"),
    (b'{"v": 1, "id": 9, "op": "status", "surprise": true}\n', 9, "field 'surprise'"),
    (b'{"v": 1, "id": "x", "op": "status"}\n', "x", "field 'id'"),
    (b"[1, 2, 3]\n", 0, "expected a JSON object, got an array"),
    (b'"just a string"\n', 0, "expected a JSON object, got a string"),
    (b"null\n", 0, "expected a JSON object, got null"),
    (b'{"v": 1, "id": 4, "op": "' + b"x" * (3 * MAX_LINE) + b'"}\n', 0, f"longer than {MAX_LINE} bytes"),
    (b'{"v": 1, "id": 5, "op": "approve", "gate": "B.release"}\n', 5, "needs 'gate' and 'decision'"),
]


def _reply(sock: socket.socket, buf: bytearray) -> dict:  # type: ignore[type-arg]
    while b"\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection instead of replying"
        buf.extend(chunk)
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return json.loads(line)  # type: ignore[no-any-return]


def test_every_malformed_request_gets_an_error_reply_on_a_connection_that_stays_usable(tmp_path: Path) -> None:
    write_plan(tmp_path, ONE_GATE_PLAN)
    with headless_run(tmp_path, "m", "--plain") as (proc, session):
        wait_for(lambda: has_event(session, "gate_opened", "B.release"), 60, "the gate to open")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(socket_path(session)))
            buf = bytearray()
            for request, want_id, want_error in MALFORMED:
                sock.sendall(request)
                reply = _reply(sock, buf)
                assert reply["ok"] is False, (request[:60], reply)
                assert reply["id"] == want_id, (request[:60], reply)
                assert want_error in reply["error"], (request[:60], reply)
                # the same connection still serves a good request
                sock.sendall(b'{"v": 1, "id": 77, "op": "hello"}\n')
                hello = _reply(sock, buf)
                assert hello["ok"] is True and hello["id"] == 77 and hello["data"]["session"] == "m"
            # a last line without newline before the client half-closes is still answered
            sock.sendall(b'{"v": 1, "id": 78, "op": "status"}')
            sock.shutdown(socket.SHUT_WR)
            status = _reply(sock, buf)
            assert status["ok"] is True and status["data"]["gates"][0]["state"] == "waiting"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(socket_path(session)))
            sock.sendall(
                b'{"v": 1, "id": 1, "op": "approve", "gate": "B.release", "decision": "go", '
                b'"operator": "ann", "reason": "fine", "override": true}\n'  # unmet pass criteria: an override
            )
            assert _reply(sock, bytearray())["ok"] is True
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 4, out  # GO-OVERRIDE: the GO was signed over unmet pass criteria
    assert "Traceback" not in out and "Unhandled exception" not in out and "Error" not in out, out
