"""The ``api`` step against a user's hosted API (a loopback double of it): endpoint choice, key handling."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.bench.api_step import run
from pipeline.jobs.context import ServiceInfo, StepContext, StepFailed
from tests.step_helpers import step_context

KEY = "sk-hosted-secret-42"


@pytest.fixture
def hosted() -> Iterator[dict[str, Any]]:
    """A chat-completions API that demands the key and answers with a valid (unhelpful) action."""
    state: dict[str, Any] = {"auth": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["auth"].append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                status, payload = 401, {"error": "unauthorized"}
            else:
                # a model that repeats the list action, and once leaks what it was given
                text = '{"act":"list","arg":""}' if len(state["auth"]) != 3 else f"my key is {KEY}"
                payload = {
                    "model": body["model"],
                    "choices": [{"message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 9},
                }
                status = 200
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


def _ctx(tmp_path: Path, params: dict[str, Any], services: dict[str, ServiceInfo] | None = None) -> StepContext:
    art = tmp_path / "artifacts"
    return step_context(tmp_path, "A", "baseline", params, kind="api", project=tmp_path, artifacts=art, create=True,
                        services=services or {})  # fmt: skip


def test_hosted_api_with_a_key_from_the_environment(
    hosted: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTED_API_KEY", KEY)
    params = {
        "base_url": hosted["url"],
        "model": "hosted-model-1",
        "api_key_env": "HOSTED_API_KEY",
        "episodes": 2,
        "max_ticks": 6,
        "traps": ["flaky"],
    }
    summary = run(_ctx(tmp_path, params))
    assert set(hosted["auth"]) == {f"Bearer {KEY}"}
    trace = (tmp_path / "artifacts" / "dirty_trace.jsonl").read_text()
    report = (tmp_path / "artifacts" / "eval_report.json").read_text()
    assert KEY not in trace and KEY not in report and "***" in trace  # the leaked reply was redacted
    data = json.loads(report)
    assert data["model"]["id"] == "hosted-model-1" and data["ticksObserved"] == summary["ticksObserved"] == 12
    assert next(c for c in data["protocolChecks"] if c["name"] == "no_secret_in_trace")["passed"]
    assert data["verdict"] == "FAIL" and any(r.startswith("min_ticks:") for r in data["reasons"])
    ticks = [json.loads(line) for line in trace.splitlines() if '"kind":"tick"' in line]
    assert all(t["prompt_tokens"] == 50 for t in ticks if t["actor"] == "model")


def test_missing_key_is_traced_as_a_failed_call_without_requests(
    hosted: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOSTED_API_KEY", raising=False)
    params = {"base_url": hosted["url"], "model": "m", "api_key_env": "HOSTED_API_KEY", "episodes": 1, "max_ticks": 4}
    run(_ctx(tmp_path, params))
    assert hosted["auth"] == []
    ticks = [json.loads(line) for line in (tmp_path / "artifacts" / "dirty_trace.jsonl").read_text().splitlines()]
    model_ticks = [t for t in ticks if t.get("actor") == "model"]
    assert model_ticks and all("HOSTED_API_KEY" in t["observation"] for t in model_ticks)


def test_endpoint_choice_errors(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="name the service"):
        run(_ctx(tmp_path, {}))
    two = {n: ServiceInfo(name=n, kind="mlx_serve", url="http://127.0.0.1:1/v1", model="m") for n in ("a", "b")}
    with pytest.raises(StepFailed, match="name the service"):
        run(_ctx(tmp_path, {}, two))
    with pytest.raises(StepFailed, match="'c' is not among"):
        run(_ctx(tmp_path, {"service": "c"}, two))
    with pytest.raises(StepFailed, match="needs 'model'"):
        run(_ctx(tmp_path, {"base_url": "http://127.0.0.1:1/v1"}))
    with pytest.raises(StepFailed, match=r"params\.episodes"):
        run(_ctx(tmp_path, {"base_url": "http://127.0.0.1:1/v1", "model": "m", "episodes": 0}))
    with pytest.raises(StepFailed, match="no_such_pkg"):
        run(_ctx(tmp_path, {"base_url": "http://127.0.0.1:1/v1", "model": "m", "packages": ["no_such_pkg"]}))
