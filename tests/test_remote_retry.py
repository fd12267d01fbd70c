"""A retry after a lost host: the host comes back with the first attempt still running there, and the retry stops
that attempt's process group (found by its wrapper's status file) before it starts, so the step never runs twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from pipeline.config import parse_config
from pipeline.engine import Engine, RunResult
from tests.remote_helpers import LoopbackHost, processes_with
from tests.spine_helpers import journal_events
from tests.test_remote_executor import _events


def test_the_retry_after_a_lost_host_stops_the_first_attempt_still_running_there(tmp_path: Path) -> None:
    marker = f"remote-twice-{os.getpid()}"
    host = LoopbackHost(tmp_path / "host").start()
    plan = host.hosts_toml(reconnect_s=1.0) + (
        '[stages.A]\ntitle = "A"\n[stages.A.steps.long]\nkind = "shell"\nhost = "box"\nretries = 1\nbackoff = 4\n'
        'command = "if [ -e first.txt ]; then echo second attempt; else touch first.txt; echo begin; '
        f"sh -c 'sleep 60; echo {marker}'; fi\"\n"
    )
    project = tmp_path / "project"
    session_dir = project / "sessions" / "r"
    engine = Engine(parse_config(plan), session_dir=session_dir, project_dir=project)

    async def go() -> RunResult:
        task = asyncio.create_task(engine.run())
        # mid-step: the command runs there and its pid is read back (``step_started``), not a host lost while starting
        # (one look per round: a fresh-clone run found the marker, then none in a second look right after)
        while not (processes_with(marker) and _events(journal_events(session_dir), "step_started", "long")):
            await asyncio.sleep(0.05)
        await asyncio.to_thread(host.stop)  # the host is lost; its processes go on (here: on this machine)
        while not _events(journal_events(session_dir), "step_failed", "long"):
            await asyncio.sleep(0.05)
        await asyncio.to_thread(host.start)  # back before the retry's backoff ends, same port and key
        return await task

    try:
        result = asyncio.run(go())
        left = processes_with(marker)
    finally:
        engine.journal.close()
        host.stop()
        for proc in processes_with(marker):
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
    assert result.exit_code == 0, result.error
    events = journal_events(session_dir)
    assert "unreachable" in _events(events, "step_failed", "long")[0]["payload"]["error"]
    assert len(_events(events, "step_started", "long")) == 2
    assert not left, f"the first attempt still runs: {[p.pid for p in left]}"
    log2 = (session_dir / "logs" / "A.long.2.log").read_text()
    assert "stopped process group" in log2 and "A.long.1.status not written" in log2 and "second attempt" in log2
