"""Steps on a remote host over SSH: a real asyncssh server on 127.0.0.1 (tests/remote_helpers.py) is the host, the
real engine runs the plan, and the host's folder is checked for what travelled there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from pipeline.config import ConfigError, parse_config
from pipeline.engine import Engine, RunResult
from tests.remote_helpers import LoopbackHost, loopback_host, processes_with
from tests.spine_helpers import ROOT, has_event, journal_events, phasef, spawn, wait_for, write_plan


@pytest.fixture
def host(tmp_path: Path) -> Any:
    with loopback_host(tmp_path / "host") as h:
        yield h


pytestmark = pytest.mark.timeout(300)  # a hang fails here in minutes, not at the suite's 10


def _run(plan: str, project: Path, session: str = "s") -> tuple[RunResult, list[dict[str, Any]], Path]:
    session_dir = project / "sessions" / session
    engine = Engine(parse_config(plan), session_dir=session_dir, project_dir=project)

    async def go() -> tuple[RunResult, list[str]]:
        result = await engine.run()
        left = [t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return result, [name for name in left if name.startswith("Remote")]

    try:
        result, left = asyncio.run(go())
    finally:
        engine.journal.close()
    # a finished run leaves no poller and no signal on its way behind: they would outlive the engine
    assert left == [], f"tasks left running after the engine ended: {left}"
    return result, journal_events(session_dir), session_dir


def _events(events: list[dict[str, Any]], type_: str, step: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type_ and e.get("step") == step]


def test_a_remote_step_streams_its_log_and_brings_back_its_outputs(
    host: LoopbackHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "sessions" / "s" / "data").mkdir(parents=True)
    (project / "sessions" / "s" / "data" / "in.txt").write_text("three\nlines\nhere\n")
    monkeypatch.setenv("REMOTE_TOKEN", "s3cret-value-42")
    plan = host.hosts_toml() + (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.work]\nkind = "shell"\nhost = "box"\nenv = ["REMOTE_TOKEN"]\n'
        'inputs = ["data/in.txt"]\noutputs = ["out/count.txt", "out/token.txt"]\n'
        "command = '''mkdir -p out; echo started; wc -l < data/in.txt > out/count.txt; "
        'echo "$REMOTE_TOKEN" > out/token.txt; pwd > out/where.txt; ls run > out/run-files.txt; '
        "echo '@@phasef-event {\"loss\": 1.5}'; echo finished'''\n"
    )
    result, events, session = _run(plan, project)
    assert result.exit_code == 0, result.error
    assert (session / "out" / "count.txt").read_text().strip() == "3"
    assert (session / "out" / "token.txt").read_text().strip() == "s3cret-value-42"
    log = (session / "logs" / "A.work.1.log").read_text()
    assert "started" in log and "finished" in log
    remote_session = host.workdir / "s" / "sessions" / "s"
    assert (remote_session / "data" / "in.txt").read_text() == "three\nlines\nhere\n"
    assert (remote_session / "out" / "count.txt").exists()
    assert not list((remote_session / "run").glob("*.env")), "the env file is removed once the step started"
    started = _events(events, "step_started", "work")[0]["payload"]
    assert started["handle"]["executor"] == "remote" and started["handle"]["host"] == "box"
    assert started["handle"]["uploaded"] == 1
    succeeded = _events(events, "step_succeeded", "work")[0]["payload"]
    assert set(succeeded["outputs"]) == {"out/count.txt", "out/token.txt"}
    assert any(e["payload"].get("loss") == 1.5 for e in _events(events, "step_progress", "work"))
    journal = (session / "journal.jsonl").read_text()
    assert "s3cret-value-42" not in journal  # the secret travels in the env file only

    # an unchanged input is not sent again; the step runs again since its outputs were removed
    (session / "out" / "count.txt").unlink()
    result, events, _ = _run(plan, project)
    assert result.exit_code == 0, result.error
    assert _events(events, "step_started", "work")[-1]["payload"]["handle"]["uploaded"] == 0


def test_timeout_kills_the_remote_process_group(host: LoopbackHost, tmp_path: Path) -> None:
    marker = f"remote-timeout-{os.getpid()}"
    plan = host.hosts_toml() + (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.slow]\nkind = "shell"\nhost = "box"\ntimeout = 1.5\n'
        f"command = \"sh -c 'sleep 300; echo {marker}' & sh -c 'sleep 301; echo {marker}'\"\n"
    )
    t0 = time.monotonic()
    result, events, _ = _run(plan, tmp_path / "project")
    assert result.exit_code == 1
    failed = _events(events, "step_failed", "slow")[0]["payload"]
    assert failed["timed_out"] is True and "timed out" in failed["error"], failed
    assert time.monotonic() - t0 < 30
    wait_for(lambda: not processes_with(marker), 10, "the remote group to be gone")


@pytest.mark.timeout(120)
def test_a_host_whose_sftp_stops_answering_ends_the_attempt_and_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncssh's SFTP reads have no timeout and closing a file waits for the host's answer: a host that stops
    answering SFTP must not hold the poller (nor the supervisor's exit) forever."""
    from pipeline.jobs import remote

    monkeypatch.setattr(remote, "PROBE_TIMEOUT_S", 1.0)
    with loopback_host(tmp_path / "host", sftp_stalls=True) as stalling:
        plan = stalling.hosts_toml(reconnect_s=2.0) + (
            '[stages.A]\ntitle = "A"\n[stages.A.steps.quiet]\nkind = "shell"\nhost = "box"\n'
            "command = 'echo hello; sleep 1'\n"
        )
        t0 = time.monotonic()
        result, events, session = _run(plan, tmp_path / "project")  # _run also checks that no task is left
        elapsed = time.monotonic() - t0
    assert result.exit_code == 1
    failed = _events(events, "step_failed", "quiet")[-1]["payload"]
    assert "without an exit status" in failed["error"], failed
    log = (session / "logs" / "A.quiet.1.log").read_text()
    assert "unreachable: no answer over SFTP for 1 s" in log, log
    assert elapsed < 60, elapsed


def test_cancel_stops_the_remote_step(host: LoopbackHost, tmp_path: Path) -> None:
    marker = f"remote-cancel-{os.getpid()}"
    plan = host.hosts_toml() + (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.slow]\nkind = "shell"\nhost = "box"\n'
        f"command = \"echo running; sh -c 'sleep 300; echo {marker}'\"\n"
    )
    project = tmp_path / "project"
    session_dir = project / "sessions" / "c"
    engine = Engine(parse_config(plan), session_dir=session_dir, project_dir=project)

    async def go() -> RunResult:
        task = asyncio.create_task(engine.run())
        while not has_event(session_dir, "step_started", "A.slow"):
            await asyncio.sleep(0.05)
        while not processes_with(marker):
            await asyncio.sleep(0.05)
        engine.cancel("A.slow")
        return await task

    try:
        result = asyncio.run(go())
    finally:
        engine.journal.close()
    assert result.state == "cancelled"
    assert _events(journal_events(session_dir), "step_cancelled", "slow")
    wait_for(lambda: not processes_with(marker), 10, "the remote group to be gone")


def test_a_changed_host_key_is_refused_with_the_host_named(host: LoopbackHost, tmp_path: Path) -> None:
    host.trust(asyncssh.generate_private_key("ssh-ed25519"))  # known_hosts now holds another key for this address
    plan = host.hosts_toml("studio") + (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.work]\nkind = "shell"\nhost = "studio"\ncommand = "touch ran"\n'
    )
    result, events, _ = _run(plan, tmp_path / "project")
    assert result.exit_code == 1
    error = _events(events, "step_failed", "work")[0]["payload"]["error"]
    assert "host studio" in error and "host key refused" in error
    assert not list(host.workdir.rglob("ran"))


def test_an_unreachable_host_fails_after_its_retries_naming_host_and_reason(tmp_path: Path) -> None:
    host = LoopbackHost(tmp_path / "host").start()
    host.stop()  # the port is closed now: connection refused
    plan = host.hosts_toml("gone", connect_retries=1, connect_timeout=2) + (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.work]\nkind = "shell"\nhost = "gone"\ncommand = "true"\n'
        "retries = 1\nbackoff = 0.1\n"
    )
    result, events, _ = _run(plan, tmp_path / "project")
    assert result.exit_code == 1
    failures = _events(events, "step_failed", "work")
    assert len(failures) == 2  # the step's own retry, each after the host's connection retries
    error = failures[-1]["payload"]["error"]
    assert "host gone (127.0.0.1:" in error and "unreachable after 2 tries" in error
    assert "refused" in error.lower() or "errno" in error.lower()


def test_config_check_names_the_line_of_an_unknown_host() -> None:
    plan = (
        '[hosts.studio]\naddress = "studio.local"\n\n[stages.A]\ntitle = "A"\n'
        '[stages.A.steps.work]\nkind = "shell"\ncommand = "true"\nhost = "studoi"\n'
    )
    with pytest.raises(ConfigError) as err:
        parse_config(plan, "plan.toml")
    assert "plan.toml:9: stages.A.steps.work.host: unknown host 'studoi'; declared: studio" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config('[hosts.x]\nport = 22\n[stages.A]\ntitle = "A"\n', "plan.toml")
    assert "plan.toml:1: hosts.x.address: required key is missing" in str(err.value)


def test_kill9_of_the_supervisor_then_resume_reattaches_and_runs_the_step_once(
    host: LoopbackHost, tmp_path: Path
) -> None:
    plan = host.hosts_toml() + (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.long]\nkind = "shell"\nhost = "box"\n'
        'outputs = ["out/done.txt"]\n'
        "command = 'echo run >> runs.txt; echo begin; sleep 3; mkdir -p out; echo ok > out/done.txt; echo end'\n"
    )
    write_plan(tmp_path, plan)
    session = tmp_path / "sessions" / "k"
    proc = spawn("run", "--headless", "--session", "k", cwd=tmp_path)
    wait_for(lambda: has_event(session, "step_started", "A.long"), 60, "A.long to start")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    r = phasef("run", "--headless", "--resume", "k", cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    events = journal_events(session)
    assert len(_events(events, "step_started", "long")) == 1
    assert [e["payload"]["alive"] for e in _events(events, "step_reattached", "long")] == [True]
    assert (session / "out" / "done.txt").read_text() == "ok\n"
    assert (host.workdir / "k" / "sessions" / "k" / "runs.txt").read_text() == "run\n"  # ran once, on the host
    log = (session / "logs" / "A.long.1.log").read_text()
    assert log.count("begin") == 1 and "end" in log


def test_an_unknown_host_key_is_refused(host: LoopbackHost, tmp_path: Path) -> None:
    host.known_hosts.write_text("")
    plan = host.hosts_toml("studio") + (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.work]\nkind = "shell"\nhost = "studio"\ncommand = "true"\n'
    )
    result, events, _ = _run(plan, tmp_path / "project")
    error = _events(events, "step_failed", "work")[0]["payload"]["error"]
    assert result.exit_code == 1 and "host studio" in error and "host key refused" in error


def test_the_connection_dropped_mid_step_is_reconnected_and_the_step_runs_once(
    host: LoopbackHost, tmp_path: Path
) -> None:
    plan = host.hosts_toml() + (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.long]\nkind = "shell"\nhost = "box"\n'
        'outputs = ["out/done.txt"]\n'
        "command = 'echo run >> runs.txt; echo begin; sleep 4; mkdir -p out; echo ok > out/done.txt; echo end'\n"
    )
    project = tmp_path / "project"
    session_dir = project / "sessions" / "d"
    engine = Engine(parse_config(plan), session_dir=session_dir, project_dir=project)
    remote_log = host.workdir / "d" / "sessions" / "d" / "logs" / "A.long.1.log"

    async def go() -> RunResult:
        task = asyncio.create_task(engine.run())
        while not (
            remote_log.exists()
            and "begin" in remote_log.read_text()
            and _events(journal_events(session_dir), "step_started", "long")  # (its pid read back: mid-step)
        ):
            await asyncio.sleep(0.05)
        before = host.connections
        await asyncio.to_thread(host.stop)  # every connection dropped, the port closed
        await asyncio.sleep(1.0)
        await asyncio.to_thread(host.start)  # back on the same port
        result = await task
        assert host.connections > before
        return result

    try:
        result = asyncio.run(go())
    finally:
        engine.journal.close()
    assert result.exit_code == 0, result.error
    events = journal_events(session_dir)
    assert len(_events(events, "step_started", "long")) == 1
    assert (session_dir / "out" / "done.txt").read_text() == "ok\n"
    assert (host.workdir / "d" / "sessions" / "d" / "runs.txt").read_text() == "run\n"
    log = (session_dir / "logs" / "A.long.1.log").read_text()
    assert log.count("begin") == 1 and log.count("end") == 1


def test_a_step_function_runs_with_the_hosts_python_and_its_artifacts_come_back(
    host: LoopbackHost, tmp_path: Path
) -> None:
    python = tmp_path / "host-python"  # the host's interpreter, with the project importable
    python.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    project = tmp_path / "project"
    (project / "sessions" / "f").mkdir(parents=True)
    (project / "sessions" / "f" / "in.txt").write_text("a\nb\n")
    plan = host.hosts_toml(python=str(python)) + (
        '[project]\nstep_functions = ["tests.remote_steps:count_lines"]\n'
        '[stages.A]\ntitle = "A"\n[stages.A.steps.count]\nkind = "builtin"\nhost = "box"\n'
        'function = "tests.remote_steps:count_lines"\ninputs = ["in.txt"]\n'
    )
    result, events, session = _run(plan, project, "f")
    assert result.exit_code == 0, result.error
    assert (session / "artifacts" / "A" / "count" / "count.txt").read_text() == "2\n"
    summary = _events(events, "step_succeeded", "count")[0]["payload"]["summary"]
    assert summary["lines"] == 2
    assert summary["session_dir"] == str(host.workdir / "f" / "sessions" / "f")  # it ran in the host's folder
    assert any(e["payload"].get("lines") == 2 for e in _events(events, "step_progress", "count"))


def test_a_host_lost_mid_step_past_reconnect_s_fails_the_step_naming_host_and_reason(tmp_path: Path) -> None:
    marker = f"remote-lost-{os.getpid()}"
    host = LoopbackHost(tmp_path / "host").start()
    plan = host.hosts_toml(reconnect_s=1.5) + (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.long]\nkind = "shell"\nhost = "box"\n'
        f"command = \"echo begin; sh -c 'sleep 60; echo {marker}'\"\n"
    )
    project = tmp_path / "project"
    session_dir = project / "sessions" / "l"
    engine = Engine(parse_config(plan), session_dir=session_dir, project_dir=project)

    async def go() -> RunResult:
        task = asyncio.create_task(engine.run())
        # mid-step: the command runs there and the executor has its pid (``step_started``); stopping the host between
        # the two (the process up, its pid not yet read back) is a host lost while starting, a different failure
        while not (processes_with(marker) and _events(journal_events(session_dir), "step_started", "long")):
            await asyncio.sleep(0.05)
        await asyncio.to_thread(host.stop)  # gone for good
        return await task

    try:
        result = asyncio.run(go())
    finally:
        engine.journal.close()
        for proc in processes_with(marker):  # what the lost host still runs (here: this machine)
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
    assert result.exit_code == 1
    error = _events(journal_events(session_dir), "step_failed", "long")[0]["payload"]["error"]
    assert "host box (127.0.0.1:" in error and "unreachable" in error
