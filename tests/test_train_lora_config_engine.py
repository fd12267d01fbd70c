"""A ``lora_config`` file's hyperparameters reach the trainer through the engine: the step's context holds only the
params the config sets, so the trainer can tell them from defaults and takes the rest from the file."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import parse_config
from pipeline.jobs.context import StepContext
from pipeline.jobs.spec import build_spec
from pipeline.layout import SessionLayout
from pipeline.train.params import TrainParams
from pipeline.train.step_params import with_lora_config

PLAN = """
[stages.D]
title = "D"
[stages.D.steps.fine-tune]
kind = "mlx_train"
params = { model = "models/tiny", data = "data", lora_config = "data/lora_config.yaml", iters = 7 }
"""


def test_lora_config_values_apply_where_the_step_sets_none(tmp_path: Path) -> None:
    cfg = parse_config(PLAN)
    session = tmp_path / "s"
    (session / "data").mkdir(parents=True)
    # the file Stage C writes: batch_size and learning_rate from it; iters is set by the step and wins
    (session / "data" / "lora_config.yaml").write_text(
        json.dumps({"batch_size": 2, "learning_rate": 3e-4, "iters": 999, "model": "ignored"})
    )
    layout = SessionLayout(session, tmp_path)
    build_spec(cfg, layout, "D.fine-tune", cfg.step("D.fine-tune"), 1, {})
    ctx = StepContext.model_validate_json(layout.attempt_files("D.fine-tune", 1).ctx.read_text())
    assert set(ctx.params) == {"model", "data", "lora_config", "iters"}
    merged = with_lora_config(TrainParams.model_validate(ctx.params), ctx)
    assert (merged.batch_size, merged.learning_rate, merged.iters) == (2, 3e-4, 7)
    defaults = TrainParams.model_fields
    assert defaults["batch_size"].default != 2 and defaults["learning_rate"].default != 3e-4
