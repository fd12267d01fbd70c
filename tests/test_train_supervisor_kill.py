"""Killing the supervisor (and the training process with it, as a machine crash would) during Stage D training,
then ``phasef run --resume``: the training continues from the newest checkpoint, not from step 0."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.spine_helpers import has_event, journal_events, phasef, spawn, wait_for, write_plan
from tests.test_train_runner import make_chat_data, make_tiny_model

pytestmark = pytest.mark.slow

PLAN = """
[stages.D]
title = "Fine-tune"

[stages.D.steps.fine-tune]
kind = "mlx_train"
retries = 1
[stages.D.steps.fine-tune.params]
model = "{project}/tiny"
data = "{project}/data"
fine_tune_type = "full"
learning_rate = 1e-3
iters = 200
batch_size = 4
steps_per_report = 5
steps_per_eval = 1000
save_every = 10
val_batches = 1
test_batches = 0
max_seq_length = 256
"""


def _train_events(session: Path, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [
        e["payload"]
        for e in journal_events(session)
        if e["type"] == "step_progress" and e["payload"].get("event") == kind
    ]


def test_resume_after_the_supervisor_and_its_trainer_die(tmp_path: Path) -> None:
    make_tiny_model(tmp_path / "tiny")
    make_chat_data(tmp_path / "data")
    write_plan(tmp_path, PLAN)
    session = tmp_path / "sessions" / "t"
    proc = spawn("run", "--headless", "--session", "t", cwd=tmp_path)
    wait_for(lambda: any(p.get("step", 0) >= 25 for p in _train_events(session, "train")), 240, "step 25")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    trainer = [e for e in journal_events(session) if e["type"] == "step_started"][-1]["payload"]["pid"]
    os.killpg(trainer, signal.SIGKILL)
    checkpoints = sorted((session / "artifacts/D/fine-tune/adapters").glob("0*_adapters.safetensors"))
    assert checkpoints, "no checkpoint was written before the crash"
    newest = int(checkpoints[-1].name.split("_")[0])
    assert newest >= 20

    r = phasef("run", "--headless", "--resume", "t", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    resumed = _train_events(session, "resume")
    assert [p["step"] for p in resumed] == [newest]
    second = [p["step"] for p in _train_events(session, "train") if p["_attempt"] == 2]
    assert second and min(second) > newest and max(second) == 200
    assert has_event(session, "step_succeeded", "D.fine-tune")
    status = json.loads(phasef("status", "t", "--json", cwd=tmp_path).stdout)
    assert status["steps"][0]["attempts"] == 2 and status["state"] == "completed"
