"""Data-parallel ranks joined by MLX's ring backend on loopback, each rank's own exit status checked: on this
machine, and on a real SSH host (tests/remote_helpers.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import ConfigError, parse_config
from tests.remote_helpers import loopback_host
from tests.spine_helpers import ROOT, has_event, journal_events, phasef, spawn, wait_for, write_plan
from tests.test_remote_executor import _events, _run

pytest.importorskip("mlx.core")

RING = (
    '[project]\nstep_functions = ["tests.remote_steps:ring_sum"]\n'
    '[stages.A]\ntitle = "A"\n[stages.A.steps.ring]\nkind = "builtin"\nfunction = "tests.remote_steps:ring_sum"\n'
    "ranks = 2\ntimeout = 120\n"
)


def _summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = _events(events, "step_succeeded", "ring")[0]["payload"]["summary"]
    return summary


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the local ranks import tests.remote_steps


def test_two_local_ranks_sum_over_the_ring(tmp_path: Path) -> None:
    result, events, session = _run(RING, tmp_path / "project")
    assert result.exit_code == 0, result.error
    assert _summary(events) == {"sum": 3.0, "size": 2, "rank": 0, "env_rank": "0"}
    artifacts = session / "artifacts" / "A" / "ring"
    assert (artifacts / "rank0.txt").read_text() == "3.0\n" and (
        artifacts / "rank1" / "rank1.txt"
    ).read_text() == "3.0\n"
    assert "rank 1 of 2: sum 3.0" in (session / "logs" / "A.ring.1.rank1.log").read_text()
    assert "rank 0 of 2: sum 3.0" in (session / "logs" / "A.ring.1.log").read_text()


def test_one_failing_rank_fails_the_step_with_its_log(tmp_path: Path) -> None:
    plan = RING + "[stages.A.steps.ring.params]\nfail_rank = 1\n"
    result, events, _ = _run(plan, tmp_path / "project")
    assert result.exit_code == 1
    error = _events(events, "step_failed", "ring")[0]["payload"]["error"]
    assert "rank 1 of 2 failed" in error and "this rank fails on purpose" in error and "A.ring.1.rank1.log" in error


def test_two_ranks_on_a_remote_host_sum_over_the_ring(tmp_path: Path) -> None:
    python = tmp_path / "host-python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    with loopback_host(tmp_path / "host") as host:
        plan = host.hosts_toml(python=str(python)) + RING + 'hosts = ["box"]\n'
        result, events, session = _run(plan, tmp_path / "project")
        assert result.exit_code == 0, result.error
        assert _summary(events)["sum"] == 3.0
        handle = _events(events, "step_started", "ring")[0]["payload"]["handle"]
        assert [r["executor"] for r in handle["ranks"]] == ["remote", "remote"]
        assert (session / "artifacts" / "A" / "ring" / "rank1" / "rank1.txt").read_text() == "3.0\n"


def test_config_check_refuses_ranks_that_do_not_divide_the_batch() -> None:
    plan = (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.ft]\nkind = "mlx_train"\nranks = 3\nhosts = ["nowhere"]\n'
        '[stages.A.steps.ft.params]\nmodel = "m"\ndata = "d"\nbatch_size = 4\n'
    )
    with pytest.raises(ConfigError) as err:
        parse_config(plan, "plan.toml")
    text = str(err.value)
    assert "plan.toml:10: stages.A.steps.ft.params.batch_size: batch_size 4 is not divisible by ranks = 3" in text
    assert "plan.toml:6: stages.A.steps.ft.hosts: unknown host 'nowhere'" in text
    assert "stages.A.steps.ft.ranks" not in text  # mlx_train runs on ranks; only the batch must divide


def test_config_check_accepts_two_ranks_for_mlx_train_with_a_batch_they_divide() -> None:
    plan = (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.ft]\nkind = "mlx_train"\nranks = 2\n'
        '[stages.A.steps.ft.params]\nmodel = "m"\ndata = "d"\nbatch_size = 4\n'
    )
    assert parse_config(plan, "plan.toml").step("A.ft").ranks == 2


def test_kill9_mid_ranks_then_resume_reattaches_every_rank_once(tmp_path: Path) -> None:
    write_plan(tmp_path, RING + "[stages.A.steps.ring.params]\nsleep = 3\n")
    session = tmp_path / "sessions" / "k"
    proc = spawn("run", "--headless", "--session", "k", cwd=tmp_path)
    wait_for(lambda: has_event(session, "step_started", "A.ring"), 60, "the ranks to start")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    r = phasef("run", "--headless", "--resume", "k", cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    events = journal_events(session)
    assert len(_events(events, "step_started", "ring")) == 1
    assert [e["payload"]["alive"] for e in _events(events, "step_reattached", "ring")] == [True]
    assert _events(events, "step_succeeded", "ring")[0]["payload"]["summary"]["sum"] == 3.0
    assert (session / "logs" / "A.ring.1.rank1.log").read_text().count("rank 1 of 2: sum 3.0") == 1


def test_config_check_refuses_ranks_that_do_not_divide_the_default_batch() -> None:
    plan = (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.ft]\nkind = "mlx_train"\nranks = 3\n'
        '[stages.A.steps.ft.params]\nmodel = "m"\ndata = "d"\n'
    )
    with pytest.raises(ConfigError, match="batch_size 4 is not divisible by ranks = 3"):
        parse_config(plan, "plan.toml")


def test_the_dashboard_log_shows_every_rank(tmp_path: Path) -> None:
    """The step's log pane on the real dashboard: rank 0's log (the step's) and rank 1's, each under its label."""
    from phasef_tui.app import PhasefApp
    from phasef_tui.session_source import SessionSource
    from tests.tui_helpers import plain_text, until

    result, _, session = _run(RING, tmp_path / "project")
    assert result.exit_code == 0, result.error
    source = SessionSource(session, operator="alice")
    try:
        tails = source.log_tails("A.ring")
        assert [label for label, _ in tails] == ["rank 0", "rank 1"]
        assert any("rank 0 of 2: sum 3.0" in line for line in tails[0][1])
        assert any("rank 1 of 2: sum 3.0" in line for line in tails[1][1])
        app = PhasefApp(source, blink=False, initial="dashboard")

        async def look() -> str:
            async with app.run_test(size=(100, 40)) as pilot:
                log = app.screen.query_one("#log")

                def shown() -> str:
                    return plain_text(log.content, 100)  # type: ignore[attr-defined]

                assert await until(pilot, lambda: "── rank 1 ──" in shown()), shown()
                return shown()

        text = asyncio.run(look())
        assert text.index("── rank 0 ──") < text.index("rank 0 of 2: sum 3.0") < text.index("── rank 1 ──")
        assert text.index("── rank 1 ──") < text.index("rank 1 of 2: sum 3.0")
    finally:
        source.stop()
