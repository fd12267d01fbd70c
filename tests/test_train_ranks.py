"""Data-parallel LoRA on the tiny model: two mlx_train ranks joined by MLX's ring backend on loopback.

The engine starts the step as it would in a session (the ranks executor, one local job per rank); only rank 0
writes the adapter folder, a killed rank fails the attempt with its own log, and the retry starts both ranks from
rank 0's newest checkpoint (rank 1 receives it over the ring).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipeline.services import free_ports
from tests.remote_helpers import loopback_host
from tests.spine_helpers import ROOT, journal_events
from tests.test_remote_executor import _events, _run
from tests.test_train_runner import make_chat_data, make_tiny_model, write_ctx

pytest.importorskip("mlx_lm")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny-qwen3")


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_chat_data(tmp_path_factory.mktemp("data") / "mlx", n_train=16, n_valid=4, n_test=4)


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def plan(model: Path, data: Path, *, iters: int, save_every: int, retries: int = 0, extra: str = "") -> str:
    return (
        f'[stages.D]\ntitle = "D"\n[stages.D.steps.ft]\nkind = "mlx_train"\nranks = 2\ntimeout = 120\n'
        f"retries = {retries}\nbackoff = 0\n{extra}"
        "[stages.D.steps.ft.params]\n"
        f'model = "{model}"\ndata = "{data}"\niters = {iters}\nsave_every = {save_every}\nbatch_size = 2\n'
        "learning_rate = 2e-3\nsteps_per_report = 1\nsteps_per_eval = 1000\nval_batches = 1\ntest_batches = 1\n"
        "max_seq_length = 96\n"
    )


def rank_events(log: Path, name: str) -> list[dict[str, Any]]:
    prefix = "@@phasef-event "
    events = [json.loads(x[len(prefix) :]) for x in log.read_text().splitlines() if x.startswith(prefix)]
    return [e for e in events if e.get("event") == name]


def test_two_ranks_train_one_adapter_that_loads_and_generates(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    result, events, session = _run(plan(tiny_model, chat_data, iters=4, save_every=2), tmp_path / "project")
    assert result.exit_code == 0, result.error
    summary = _events(events, "step_succeeded", "ft")[0]["payload"]["summary"]
    assert summary["ranks"] == 2 and summary["rank"] == 0 and summary["steps"] == 4
    assert summary["test_loss"] > 0 and summary["tokens_per_s"] > 0
    adapters = session / "artifacts" / "D" / "ft" / "adapters"
    assert sorted(p.name for p in adapters.iterdir()) == [
        "0000002_adapters.safetensors",
        "0000002_optimizer.safetensors",
        "0000004_adapters.safetensors",
        "0000004_optimizer.safetensors",
        "adapter_config.json",
        "adapters.safetensors",
    ]
    rank1 = session / "artifacts" / "D" / "ft" / "rank1"
    assert not list(rank1.rglob("*.safetensors")) and not list(rank1.rglob("adapter_config.json"))
    # rank 0's log is the step's log: its loss curve is what the UI shows; rank 1 trained the same steps
    train0 = rank_events(session / "logs" / "D.ft.1.log", "train")
    train1 = rank_events(session / "logs" / "D.ft.1.rank1.log", "train")
    assert [e["step"] for e in train0] == [1, 2, 3, 4] == [e["step"] for e in train1]
    assert [e["train_loss"] for e in train0] == [e["train_loss"] for e in train1]  # averaged over both ranks
    assert not rank_events(session / "logs" / "D.ft.1.rank1.log", "checkpoint")
    assert [e["step"] for e in rank_events(session / "logs" / "D.ft.1.log", "checkpoint")] == [2, 4]

    from mlx_lm import generate
    from mlx_lm.utils import load

    model, tokenizer = load(str(tiny_model), adapter_path=str(adapters))
    text = generate(model, tokenizer, prompt="task 3: the check", max_tokens=4)
    assert isinstance(text, str)
    assert time.monotonic() - started < 60


def _rank_python(wrapper_pid: int) -> psutil.Process:
    """The training process under a rank's status-file wrapper."""
    for child in psutil.Process(wrapper_pid).children(recursive=True):
        if "pipeline.jobs.run_function" in " ".join(child.cmdline()):
            return child
    raise AssertionError(f"no training process under {wrapper_pid}")


def _wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_rank_fails_the_attempt_and_the_retry_resumes_all_ranks_from_the_newest_checkpoint(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    session = project / "sessions" / "s"
    log0 = session / "logs" / "D.ft.1.log"
    killed: dict[str, int] = {}

    def kill_rank1_after_a_checkpoint() -> None:
        try:
            _wait_for(lambda: log0.exists() and rank_events(log0, "checkpoint"), 50, "a checkpoint from rank 0")
            started = _events(journal_events(session), "step_started", "ft")
            wrapper = started[0]["payload"]["handle"]["ranks"][1]["pid"]
            proc = _rank_python(wrapper)
            killed["pid"] = proc.pid
            killed["after_checkpoint"] = rank_events(log0, "checkpoint")[-1]["step"]
            os.kill(proc.pid, signal.SIGKILL)
        except AssertionError as exc:
            print(exc, file=sys.stderr)

    killer = threading.Thread(target=kill_rank1_after_a_checkpoint, daemon=True)
    killer.start()
    result, events, session = _run(plan(tiny_model, chat_data, iters=40, save_every=2, retries=1), project, session="s")
    killer.join(5)
    assert "pid" in killed, "rank 1 was never killed"
    failed = _events(events, "step_failed", "ft")
    assert failed, [e["type"] for e in events if e.get("step") == "ft"]
    error = json.dumps(failed[0]["payload"])
    assert "rank 1 of 2 failed" in error and "D.ft.1.rank1.log" in error
    assert result.exit_code == 0, result.error
    # attempt 2: rank 0 resumes from its newest checkpoint, rank 1 from the same one received over the ring
    resume0 = rank_events(session / "logs" / "D.ft.2.log", "resume")
    resume1 = rank_events(session / "logs" / "D.ft.2.rank1.log", "resume")
    assert resume0 and resume1 and resume0[0]["step"] == resume1[0]["step"] >= killed["after_checkpoint"]
    received = session / "artifacts" / "D" / "ft" / "rank1" / "resume"
    assert [p.name for p in received.glob("*_adapters.safetensors")] == [
        f"{resume0[0]['step']:07d}_adapters.safetensors"
    ]
    summary = _events(events, "step_succeeded", "ft")[0]["payload"]["summary"]
    assert summary["steps"] == 40 and summary["resumed_from"] == resume0[0]["step"]
    assert not list((session / "artifacts" / "D" / "ft" / "rank1").rglob("adapters/*.safetensors"))


def test_two_ranks_on_a_remote_host_train_and_rank0_brings_back_the_adapter(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    python = tmp_path / "host-python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    with loopback_host(tmp_path / "host") as host:
        text = host.hosts_toml(python=str(python)) + plan(
            tiny_model,
            chat_data,
            iters=2,
            save_every=2,
            extra='hosts = ["box"]\noutputs = ["artifacts/D/ft/adapters"]\n',
        )
        result, events, session = _run(text, tmp_path / "project")
        assert result.exit_code == 0, result.error
        handle = _events(events, "step_started", "ft")[0]["payload"]["handle"]
        assert [r["executor"] for r in handle["ranks"]] == ["remote", "remote"]
        summary = _events(events, "step_succeeded", "ft")[0]["payload"]["summary"]
        assert summary["ranks"] == 2 and summary["steps"] == 2
        remote_adapters = Path(summary["adapter_path"])
        assert remote_adapters.is_relative_to(host.workdir), remote_adapters  # rank 0 trained on the host
        assert sorted(p.name for p in remote_adapters.glob("*_adapters.safetensors")) == [
            "0000002_adapters.safetensors"
        ]
        assert not list(remote_adapters.parent.glob("rank1/**/*.safetensors"))
        back = session / "artifacts" / "D" / "ft" / "adapters" / "adapters.safetensors"
        assert back.is_file(), sorted(str(p.relative_to(session)) for p in session.rglob("*"))


def test_the_jobs_own_time_budget_stops_both_ranks_at_the_same_step(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    text = plan(tiny_model, chat_data, iters=5000, save_every=1000).replace(
        "max_seq_length = 96\n", "max_seq_length = 96\ntimeout = 8\n"
    )
    started = time.monotonic()
    result, events, session = _run(text, tmp_path / "project")
    assert result.exit_code == 1
    error = _events(events, "step_failed", "ft")[0]["payload"]["error"]
    assert "training time budget of 8 s used up at step" in error
    stopped0 = rank_events(session / "logs" / "D.ft.1.log", "stopped")
    stopped1 = rank_events(session / "logs" / "D.ft.1.rank1.log", "stopped")
    assert stopped0 and stopped1 and stopped0[0]["step"] == stopped1[0]["step"]  # agreed, though budgets differ
    assert stopped0[0]["reason"] == "timeout" == stopped1[0]["reason"]
    step = stopped0[0]["step"]
    adapters = session / "artifacts" / "D" / "ft" / "adapters"
    if step:  # the stop saved the step reached, from rank 0 only
        assert (adapters / f"{step:07d}_adapters.safetensors").is_file()
    assert not list((session / "artifacts" / "D" / "ft" / "rank1").rglob("*.safetensors"))
    assert time.monotonic() - started < 60


def test_ranks_on_two_hosts_resume_from_rank0s_checkpoint_that_only_rank0s_host_holds(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    python = tmp_path / "host-python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    project = tmp_path / "project"
    session = project / "sessions" / "s"
    log0 = session / "logs" / "D.ft.1.log"
    killed: dict[str, int] = {}

    def kill_rank1_after_a_checkpoint() -> None:
        try:
            _wait_for(lambda: log0.exists() and rank_events(log0, "checkpoint"), 50, "a checkpoint from rank 0")
            killed["after_checkpoint"] = rank_events(log0, "checkpoint")[-1]["step"]
            rank1 = _wait_for(
                lambda: [
                    p
                    for p in psutil.process_iter(["cmdline"])
                    if any(part.endswith("D.ft.1.rank1.ctx.json") for part in p.info["cmdline"] or [])
                    and "pipeline.jobs.run_function" in (p.info["cmdline"] or [])
                ],
                10,
                "rank 1's training process on the second host",
            )[0]
            killed["pid"] = rank1.pid
            os.kill(rank1.pid, signal.SIGKILL)
        except AssertionError as exc:
            print(exc, file=sys.stderr)

    with loopback_host(tmp_path / "host1") as one, loopback_host(tmp_path / "host2") as two:
        text = (
            one.hosts_toml("box1", python=str(python))
            + two.hosts_toml("box2", python=str(python))
            + plan(tiny_model, chat_data, iters=30, save_every=2, retries=1, extra='hosts = ["box1", "box2"]\n')
        )
        killer = threading.Thread(target=kill_rank1_after_a_checkpoint, daemon=True)
        killer.start()
        result, events, session = _run(text, project, session="s")
        killer.join(5)
        assert "pid" in killed, "rank 1 was never killed"
        assert result.exit_code == 0, result.error
        handle = _events(events, "step_started", "ft")[-1]["payload"]["handle"]
        assert [r["host"] for r in handle["ranks"]] == ["box1", "box2"]
        resume0 = rank_events(session / "logs" / "D.ft.2.log", "resume")
        resume1 = rank_events(session / "logs" / "D.ft.2.rank1.log", "resume")
        assert resume0 and resume1 and resume0[0]["step"] == resume1[0]["step"] >= killed["after_checkpoint"]
        # box2 never held a checkpoint in an adapter folder: rank 1 got rank 0's over the ring
        on_two = sorted(p.relative_to(two.workdir).as_posix() for p in two.workdir.rglob("*.safetensors"))
        assert on_two and all("/rank1/resume/" in p for p in on_two), on_two
        assert any("/adapters/" in p.as_posix() for p in one.workdir.rglob("*_adapters.safetensors"))
        summary = _events(events, "step_succeeded", "ft")[0]["payload"]["summary"]
        assert summary["steps"] == 30 and summary["resumed_from"] == resume0[0]["step"]


def test_a_batch_from_the_lora_config_that_the_ranks_do_not_divide_fails_each_rank_by_name(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    """Run directly as the ranks executor starts the ranks (the engine writes every param into the context, so a
    lora_config's batch_size reaches the trainer only this way today)."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"batch_size": 3}))
    hostfile = tmp_path / "hostfile.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{port}"] for port in free_ports(2)]))
    params = {"model": str(tiny_model), "data": str(chat_data), "iters": 2, "lora_config": str(recipe)}
    procs = []
    for rank in range(2):
        ctx = write_ctx(tmp_path / f"rank{rank}", params)
        env = {**os.environ, "MLX_RANK": str(rank), "MLX_HOSTFILE": str(hostfile)}
        argv = [sys.executable, "-m", "pipeline.jobs.run_function", str(ctx), "pipeline.train.runner:run"]
        procs.append((ctx, subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)))
    for ctx, proc in procs:
        assert proc.wait(60) == 1
        result = json.loads(ctx.with_name(ctx.name.replace(".ctx.json", ".result.json")).read_text())
        assert "params.batch_size: 3 is not divisible by ranks = 2" in result["error"]
