"""Small real sessions for the cross-session tests: the engine serves a tiny MLX model and runs the reference
workload against it (a few episodes), so each session has a real journal, trace and eval report."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline.config import parse_config
from pipeline.engine import Engine


def tiny_eval_plan(
    project: str = "cross",
    *,
    title: str = "Evaluation",
    step: str = "eval",
    model_seed: int = 0,
    workload_seed: int = 1,
    episodes: int = 5,
    min_ticks: int = 0,
    extra_params: str = "",
) -> str:
    """Stage A serving a tiny MLX model: the builtin model init, then the ``api`` step ``A.STEP`` running the
    reference workload against it. ``extra_params``: more ``key = value, `` pairs of the step's params."""
    return f"""
[project]
name = "{project}"

[services.tiny]
kind = "mlx_serve"
start_timeout = 120
params = {{ model = "models/tiny" }}

[stages.A]
title = "{title}"
sequential = true

[stages.A.steps.init_model]
kind = "builtin"
function = "pipeline.models.tiny:init_step"
params = {{ dir = "models/tiny", seed = {model_seed} }}
outputs = ["models/tiny/config.json"]

[stages.A.steps.{step}]
kind = "api"
services = ["tiny"]
params = {{ episodes = {episodes}, seed = {workload_seed}, {extra_params}gate = {{ min_ticks = {min_ticks} }} }}
outputs = ["artifacts/A/{step}/eval_report.json", "artifacts/A/{step}/dirty_trace.jsonl"]
"""


def eval_plan(model_seed: int, workload_seed: int, episodes: int = 5, min_ticks: int = 0) -> str:
    return tiny_eval_plan(model_seed=model_seed, workload_seed=workload_seed, episodes=episodes, min_ticks=min_ticks)


def run_session(root: Path, name: str, plan: str) -> Path:
    session_dir = root / name
    engine = Engine(parse_config(plan), session_dir=session_dir, project_dir=root)
    try:
        result = asyncio.run(engine.run())
    finally:
        engine.journal.close()
    assert result.exit_code == 0, result
    return session_dir
