"""The chat client against loopback HTTP doubles of a hosted chat-completions API (429/5xx, auth, bad bodies).

The doubles stand in for a remote provider, which a test cannot reach; they speak the real protocol over real
HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipeline.api_client import ChatClient, ChatError, parse_retry_after

Reply = tuple[int, dict[str, str], bytes]
KEY = "sk-test-0123456789abcdef"


def completion(text: str = '{"act":"list","arg":""}', model: str = "remote-model") -> Reply:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def error(status: int, headers: dict[str, str] | None = None, body: bytes = b'{"error":"busy"}') -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, body


@dataclass
class Double:
    """A chat-completions endpoint that answers from a script (or a function of the request)."""

    script: list[Reply] = field(default_factory=list)
    handler: Callable[[dict[str, str], dict[str, Any]], Reply] | None = None
    delay: float = 0.0
    requests: list[tuple[float, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def double() -> Iterator[Double]:
    state = Double()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.requests.append((time.monotonic(), headers, body))
            if state.delay:
                time.sleep(state.delay)
            if self.path != "/v1/chat/completions":
                status, extra, payload = error(404)
            elif state.handler is not None:
                status, extra, payload = state.handler(headers, body)
            else:
                status, extra, payload = state.script.pop(0) if state.script else completion()
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]


async def test_429_then_500_then_200_is_retried_with_retry_after(double: Double) -> None:
    double.script = [error(429, {"Retry-After": "0.4"}), error(500), completion("hello")]
    async with ChatClient(double.url, "m", retries=3, backoff=0.05) as client:
        result = await client.complete(MESSAGES, max_tokens=9, seed=5)
    assert result.text == "hello" and result.attempts == 3
    assert (result.prompt_tokens, result.completion_tokens, result.model) == (11, 7, "remote-model")
    assert 0 < result.latency_s < 1
    times = [t for t, _, _ in double.requests]
    assert times[1] - times[0] >= 0.39  # Retry-After honoured
    assert times[2] - times[1] < 0.35  # then exponential backoff from 0.05 s
    body = double.requests[0][2]
    assert body["model"] == "m" and body["messages"] == MESSAGES and body["max_tokens"] == 9 and body["seed"] == 5


async def test_backoff_grows_and_gives_up_after_the_retries(double: Double) -> None:
    double.script = [error(503)] * 4
    async with ChatClient(double.url, "m", retries=3, backoff=0.1, backoff_max=0.25) as client:
        with pytest.raises(ChatError) as info:
            await client.complete(MESSAGES)
    assert info.value.error_class == "HTTPError" and info.value.attempts == 4 and info.value.status == 503
    gaps = [b[0] - a[0] for a, b in zip(double.requests, double.requests[1:], strict=False)]
    assert 0.05 <= gaps[0] <= 0.2 and 0.1 <= gaps[1] <= 0.3 and 0.12 <= gaps[2] <= 0.35  # capped at backoff_max


async def test_client_errors_are_not_retried(double: Double) -> None:
    double.script = [error(400, body=b'{"error":"bad request"}')]
    async with ChatClient(double.url, "m", retries=3, backoff=0.01) as client:
        with pytest.raises(ChatError) as info:
            await client.complete(MESSAGES)
    assert (info.value.error_class, info.value.attempts, info.value.status) == ("HTTPError", 1, 400)
    assert "bad request" in str(info.value)


def _auth_handler(headers: dict[str, str], body: dict[str, Any]) -> Reply:
    auth = headers.get("authorization", "")
    if auth != f"Bearer {KEY}":
        # a careless provider that echoes the credential it got
        return error(401, body=json.dumps({"error": f"invalid credential {auth}"}).encode())
    return completion("authorized")


async def test_bearer_key_is_read_from_the_environment_at_call_time(
    double: Double, monkeypatch: pytest.MonkeyPatch
) -> None:
    double.handler = _auth_handler
    client = ChatClient(double.url, "m", api_key_env="PHASEF_TEST_API_KEY", retries=0)
    monkeypatch.delenv("PHASEF_TEST_API_KEY", raising=False)
    with pytest.raises(ChatError) as info:
        await client.complete(MESSAGES)
    assert info.value.attempts == 0 and "PHASEF_TEST_API_KEY" in str(info.value)
    assert double.requests == []  # nothing was sent without a key
    monkeypatch.setenv("PHASEF_TEST_API_KEY", KEY)
    assert (await client.complete(MESSAGES)).text == "authorized"
    assert double.requests[-1][1]["authorization"] == f"Bearer {KEY}"
    await client.aclose()


async def test_the_key_never_appears_in_errors(double: Double, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "sk-wrong-key-that-must-not-leak"
    double.handler = _auth_handler
    monkeypatch.setenv("PHASEF_TEST_API_KEY", wrong)
    async with ChatClient(double.url, "m", api_key_env="PHASEF_TEST_API_KEY", retries=2) as client:
        with pytest.raises(ChatError) as info:
            await client.complete(MESSAGES)
    assert info.value.status == 401 and info.value.attempts == 1
    text = f"{info.value} {info.value.args} {info.value!r}"
    assert wrong not in text and "***" in text


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_retried_then_a_connection_error() -> None:
    async with ChatClient(f"http://127.0.0.1:{_closed_port()}/v1", "m", retries=2, backoff=0.01) as client:
        started = time.monotonic()
        with pytest.raises(ChatError) as info:
            await client.complete(MESSAGES)
    assert (info.value.error_class, info.value.attempts) == ("ConnectionError", 3)
    assert time.monotonic() - started < 2


async def test_slow_server_is_a_timeout(double: Double) -> None:
    double.delay = 0.6
    async with ChatClient(double.url, "m", timeout=0.2, retries=1, backoff=0.01) as client:
        with pytest.raises(ChatError) as info:
            await client.complete(MESSAGES)
    assert (info.value.error_class, info.value.attempts) == ("Timeout", 2)
    assert len(double.requests) == 2


@pytest.mark.parametrize(
    "reply",
    [
        (200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"),
        (200, {"Content-Type": "application/json"}, b'{"choices": []}'),
        (200, {"Content-Type": "application/json"}, b'{"choices": [{"message": {"content": 42}}]}'),
    ],
)
async def test_malformed_completions_are_bad_responses(double: Double, reply: Reply) -> None:
    double.script = [reply]
    async with ChatClient(double.url, "m", retries=3) as client:
        with pytest.raises(ChatError) as info:
            await client.complete(MESSAGES)
    assert info.value.error_class == "BadResponse" and info.value.attempts == 1


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1.5)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
