"""API auditors against a loopback server that speaks the chat-completions protocol (a double of a hosted API
or of the session's ``mlx_lm.server``)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.jobs.context import ServiceInfo
from tests.test_audit_support import Session


class ChatDouble(ThreadingHTTPServer):
    """Answers POST /v1/chat/completions from a script: a verdict word, raw text, or an HTTP status."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[str] = ["go"]
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reply(self, body: dict[str, Any]) -> tuple[int, str]:
        mode = self.script[min(len(self.requests) - 1, len(self.script) - 1)]
        if mode.startswith("http-"):
            return int(mode[5:]), '{"error": "double says no"}'
        prompt = body["messages"][-1]["content"]
        match = re.search(r"packet_sha256: `([0-9a-f]{64})`", prompt)
        sha = match.group(1) if match else ""
        if mode == "go":
            block = {"verdict": "GO", "findings": ["read"], "evidence_refs": ["recovery_chains"], "packet_sha256": sha}
            text = "```json\n" + json.dumps(block) + "\n```"
        elif mode == "nogo":
            block = {"verdict": "NO-GO", "blockers": ["api-blocker"], "packet_sha256": sha}
            text = "Not convinced. " + json.dumps(block)
        else:
            text = mode  # raw text, as a tiny random model would babble
        completion = {
            "id": "chatcmpl-double",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4},
        }
        return 200, json.dumps(completion)


class _Handler(BaseHTTPRequestHandler):
    server: ChatDouble

    def do_POST(self) -> None:
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        self.server.auth.append(self.headers.get("Authorization"))
        status, payload = self.server.reply(body)
        data = payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def chat() -> Iterator[ChatDouble]:
    server = ChatDouble()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def session(tmp_path: Path) -> Session:
    return Session(tmp_path)


def test_cli_primary_and_api_recursive_go(session: Session, chat: ChatDouble) -> None:
    session.double("first", ["go"])
    session.auditors["second"] = {"kind": "api", "base_url": chat.url, "model": "judge-1", "retries": 0}
    _, outcome = session.run()
    assert outcome.verdict == "GO"
    assert [(a.name, a.verdict) for a in outcome.auditors] == [("first", "GO"), ("second", "GO")]
    request = chat.requests[0]
    assert request["model"] == "judge-1" and request["temperature"] == 0.0
    assert request["messages"][0]["role"] == "system" and "evidence_refs" in request["messages"][0]["content"]
    # recursion: the API auditor was handed the CLI auditor's verdict along with the packet
    assert "finding-log-first-call0" in request["messages"][1]["content"]
    assert outcome.packet_sha256 in request["messages"][1]["content"]
    raw = session.dir / outcome.auditors[1].raw_output_path
    assert '"verdict": "GO"' in raw.read_text()


def test_api_auditor_from_a_running_service_with_its_key(
    session: Session, chat: ChatDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIT_API_KEY", "sk-double-key-987654")
    session.auditors["first"] = {"kind": "api", "service": "judge", "api_key_env": "AUDIT_API_KEY", "retries": 0}
    session.auditors["second"] = {"kind": "api", "service": "judge", "model": "override", "retries": 0}
    chat.script = ["nogo", "go"]
    session.params["rounds"] = 1
    services = {"judge": ServiceInfo(name="judge", kind="mlx_serve", url=chat.url, model="served-model")}
    _, outcome = session.run(services=services)
    assert outcome.verdict == "NO-GO"
    assert [a.verdict for a in outcome.auditors] == ["NO-GO", "GO"]
    assert [r["model"] for r in chat.requests] == ["served-model", "override"]
    assert chat.auth == ["Bearer sk-double-key-987654", None]
    assert "api-blocker" in chat.requests[1]["messages"][1]["content"]
    assert "after 1 round(s): round limit reached" in outcome.reasons[-1]
    everything = "".join(p.read_text(errors="replace") for p in session.dir.rglob("*") if p.is_file())
    assert "sk-double-key-987654" not in everything


def test_babbling_model_is_invalid_with_its_words_shown(session: Session, chat: ChatDouble) -> None:
    babble = "the the lock lock ls ls {{ }} answer"
    chat.script = [babble]
    session.auditors["first"] = {"kind": "api", "base_url": chat.url, "model": "tiny", "retries": 0}
    session.auditors["second"] = {"kind": "api", "base_url": chat.url, "model": "tiny", "retries": 0}
    _, outcome = session.run()
    assert outcome.verdict == "INVALID"
    assert all(a.verdict == "INVALID" for a in outcome.auditors)
    assert (session.dir / outcome.auditors[0].raw_output_path).read_text() == babble
    assert babble in outcome.reasons[0]


def test_unset_key_missing_service_and_http_errors(
    session: Session, chat: ChatDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUDIT_API_KEY", raising=False)
    session.auditors["first"] = {"kind": "api", "base_url": chat.url, "model": "m", "api_key_env": "AUDIT_API_KEY"}
    session.auditors["second"] = {"kind": "api", "service": "not-started"}
    _, outcome = session.run()
    assert outcome.verdict == "BLOCKED"
    errors = [a.error or "" for a in outcome.auditors]
    assert "environment variable AUDIT_API_KEY is not set" in errors[0]
    assert "service 'not-started' is not running" in errors[1]
    assert chat.requests == []

    chat.script = ["http-401"]
    session.auditors["first"] = {"kind": "api", "base_url": chat.url, "model": "m", "retries": 0}
    session.auditors["second"] = {"kind": "api", "base_url": chat.url, "model": "m", "retries": 0}
    _, outcome = session.run(attempt=2)
    assert outcome.verdict == "BLOCKED"
    assert "HTTPError" in (outcome.auditors[0].error or "") and "401" in (outcome.auditors[0].error or "")


def test_unreachable_endpoint_blocks(session: Session, chat: ChatDouble) -> None:
    port = chat.server_address[1]
    chat.shutdown()
    chat.server_close()
    url = f"http://127.0.0.1:{port}/v1"
    session.auditors["first"] = {"kind": "api", "base_url": url, "model": "m", "retries": 0}
    session.auditors["second"] = {"kind": "api", "base_url": url, "model": "m", "retries": 0}
    _, outcome = session.run()
    assert outcome.verdict == "BLOCKED"
    assert all("ConnectionError" in (a.error or "") for a in outcome.auditors)
