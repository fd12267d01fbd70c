"""Stage A as a plan: the engine starts ``mlx_serve``, runs the builtin model init and the ``api`` step."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cross_helpers import run_session, tiny_eval_plan

PLAN = tiny_eval_plan("stage-a", title="Baseline (API)", step="baseline", episodes=3)


def test_engine_runs_stage_a_with_the_service(tmp_path: Path) -> None:
    run_session(tmp_path, "session", PLAN)
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
