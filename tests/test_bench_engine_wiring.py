"""Stage A as a plan: the engine starts ``mlx_serve``, runs the builtin model init and the ``api`` step."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pipeline.config import parse_config
from pipeline.engine import Engine

PLAN = """
[project]
name = "stage-a"

[services.tiny]
kind = "mlx_serve"
start_timeout = 120
params = { model = "models/tiny" }

[stages.A]
title = "Baseline (API)"
sequential = true

[stages.A.steps.init_model]
kind = "builtin"
function = "pipeline.models.tiny:init_step"
params = { dir = "models/tiny", seed = 0 }
outputs = ["models/tiny/config.json"]

[stages.A.steps.baseline]
kind = "api"
services = ["tiny"]
params = { episodes = 3, seed = 1, gate = { min_ticks = 0 } }
outputs = ["artifacts/A/baseline/eval_report.json", "artifacts/A/baseline/dirty_trace.jsonl"]
"""


def test_engine_runs_stage_a_with_the_service(tmp_path: Path) -> None:
    engine = Engine(parse_config(PLAN), session_dir=tmp_path / "session", project_dir=tmp_path)
    try:
        result = asyncio.run(engine.run())
    finally:
        engine.journal.close()
    assert result.exit_code == 0, result
    art = tmp_path / "session" / "artifacts" / "A" / "baseline"
    summary = json.loads((art / "summary.json").read_text())
    report = json.loads((art / "eval_report.json").read_text())
    assert summary["ticksObserved"] == report["ticksObserved"] > 0
    assert report["model"]["id"] == "default_model" and report["model"]["baseUrl"].startswith("http://127.0.0.1:")
    journal = [json.loads(line) for line in (tmp_path / "session" / "journal.jsonl").read_text().splitlines()]
    types = [e["type"] for e in journal]
    assert "service_started" in types and "service_stopped" in types
    events = [e["payload"]["event"] for e in journal if e["type"] == "step_progress"]
    assert "model" in events and events.count("episode") == 3 and "tick" in events
