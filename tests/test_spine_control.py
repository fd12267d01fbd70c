"""The control socket: typed, versioned messages; mode 0600; subscription stream; layering rules."""

from __future__ import annotations

import ast
import asyncio
import json
import stat
from pathlib import Path

from pipeline.config import parse_config
from pipeline.control import PROTOCOL_VERSION, ControlServer, subscribe
from pipeline.engine import Engine
from tests.spine_helpers import ROOT, work_then_gate_plan

PLAN = work_then_gate_plan("echo one; echo two")


async def _request(path: Path, obj: dict) -> dict:  # type: ignore[type-arg]
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(json.dumps(obj).encode() + b"\n")
    await writer.drain()
    reply = json.loads(await reader.readline())
    writer.close()
    return reply  # type: ignore[no-any-return]


async def test_protocol_over_the_socket(tmp_path: Path) -> None:
    engine = Engine(parse_config(PLAN), session_dir=tmp_path / "s", project_dir=tmp_path)
    server = ControlServer(engine)
    await server.start()
    assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
    reader, writer = await subscribe(engine.session_dir)
    run = asyncio.create_task(engine.run())
    seen: list[dict] = []  # type: ignore[type-arg]
    while not any(m.get("event", {}).get("type") == "gate_opened" for m in seen):
        seen.append(json.loads(await asyncio.wait_for(reader.readline(), 20)))
    assert all(m["v"] == PROTOCOL_VERSION for m in seen)
    assert [m["event"]["seq"] for m in seen if "event" in m] == sorted(m["event"]["seq"] for m in seen if "event" in m)
    logs = [line for m in seen if "log" in m for line in m["log"]["lines"]]
    assert logs == ["one", "two"]

    hello = await _request(server.path, {"v": 1, "id": 7, "op": "hello"})
    assert hello == {"v": 1, "id": 7, "ok": True, "data": {"version": 1, "session": "s"}, "error": None}
    wrong = await _request(server.path, {"v": 99, "id": 1, "op": "status"})
    assert wrong["ok"] is False and "protocol version 1" in wrong["error"]
    bad = await _request(server.path, {"v": 1, "op": "explode"})
    assert bad["ok"] is False and "field 'op'" in bad["error"]
    viewer = await _request(
        server.path,
        {"v": 1, "op": "approve", "gate": "A.gate", "decision": "go", "operator": "v", "reason": "r", "role": "viewer"},
    )
    assert viewer["ok"] is False and "only approvers" in viewer["error"]
    status = await _request(server.path, {"v": 1, "op": "status"})
    assert status["data"]["gates"][0]["state"] == "waiting"
    # this plan has no comparison and no audit: a GO at its final gate overrides every pass criterion
    sign = {"v": 1, "op": "approve", "gate": "A.gate", "decision": "go", "operator": "ann", "reason": "fine"}
    plain = await _request(server.path, sign)
    assert plain["ok"] is False and "would override unmet pass criteria" in plain["error"]
    assert "recursive audit verdict = GO" in plain["error"] and "no comparison report" in plain["error"]
    ok = await _request(server.path, {**sign, "override": True})
    assert ok["ok"] is True and ok["data"]["operator"] == "ann" and ok["data"]["override"] is True
    result = await asyncio.wait_for(run, 20)
    assert result.exit_code == 4 and result.final_decision == "GO-OVERRIDE"
    writer.close()
    await server.close()
    engine.journal.close()


def test_pipeline_imports_no_textual() -> None:
    offenders = []
    for path in (ROOT / "pipeline").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}: {n}" for n in names if n.split(".")[0] in ("textual", "widgets", "phasef_tui")]
    assert offenders == []


def test_widgets_do_no_engine_io() -> None:
    offenders = []
    for path in (ROOT / "widgets").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for banned in ("pipeline.engine", "pipeline.control", "pipeline.journal import Journal", "open("):
            if banned in text:
                offenders.append(f"{path}: {banned}")
    assert offenders == []
