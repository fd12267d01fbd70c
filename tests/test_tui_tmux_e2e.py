"""The real ``phasef`` in tmux, as an operator uses it: start, watch, inspect, sign, detach, reattach."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.spine_helpers import has_event, journal_events, phasef, wait_for, write_plan
from tests.tui_helpers import sample_records, write_trace

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

PLAN = """
[stages.A]
title = "Baseline"
sequential = true

[stages.A.steps.warm-up]
kind = "shell"
command = "sleep 2; echo warm"

[stages.A.steps.eval]
kind = "shell"
command = 'mkdir -p artifacts/A/eval; cp {project}/trace.jsonl artifacts/A/eval/dirty_trace.jsonl; sleep 1'

[stages.B]
title = "Decision"
needs = ["A"]

[stages.B.steps.release]
kind = "gate"
prompt = "Release?"
evidence = ["artifacts/A/eval/dirty_trace.jsonl"]

[stages.B.steps.after]
kind = "shell"
command = "sleep 3; echo after"
needs = ["release"]
"""


class Tmux:
    """A private tmux server (its own socket, no user config)."""

    def __init__(self, name: str, cwd: Path) -> None:
        self.name = name
        self.cwd = cwd
        self.base = ["tmux", "-S", str(cwd / "tmux.sock"), "-f", "/dev/null"]

    def start(self, *args: str) -> None:
        cmd = " ".join([sys.executable, "-m", "phasef_tui.cli", *args])
        env = {**os.environ, "PHASEF_OPERATOR": "tess", "TERM": "xterm-256color"}
        subprocess.run(
            [*self.base, "new-session", "-d", "-s", self.name, "-x", "110", "-y", "32", "-c", str(self.cwd), cmd],
            check=True,
            env=env,
        )

    def keys(self, *keys: str) -> None:
        for k in keys:
            subprocess.run([*self.base, "send-keys", "-t", self.name, k], check=True)
            time.sleep(0.3)

    def text(self) -> str:
        r = subprocess.run([*self.base, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return r.stdout

    def wait_text(self, needle: str, timeout: float = 30) -> str:
        wait_for(lambda: needle in self.text(), timeout, f"{needle!r} on screen:\n{self.text()}")
        return self.text()

    def alive(self) -> bool:
        return subprocess.run([*self.base, "has-session", "-t", self.name], capture_output=True).returncode == 0

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-session", "-t", self.name], capture_output=True)


def test_operator_flow_in_tmux(tmp_path: Path) -> None:
    write_plan(tmp_path, PLAN)
    write_trace(tmp_path / "trace.jsonl", sample_records())
    tui = Tmux(f"phasef-e2e-{os.getpid()}", tmp_path)
    tui.start()  # `phasef` alone: starts a supervisor for ./config.toml and attaches
    try:
        tui.wait_text("Baseline")
        sessions = tmp_path / "sessions"
        wait_for(lambda: any(sessions.glob("*/journal.jsonl")), 20, "a session")
        session = next(sessions.glob("*/journal.jsonl")).parent
        first = tui.text()
        wait_for(lambda: has_event(session, "gate_opened", "B.release"), 30, "the gate")
        time.sleep(1)
        assert tui.text() != first  # the stage board moved
        tui.keys("2")
        tui.wait_text("e2")  # the trace stream shows the records
        tui.keys("3")
        before = tui.text()
        tui.keys("n")
        assert tui.text() != before  # stepped to the next tick of the chain
        tui.keys("4")
        tui.wait_text("Release?")
        tui.keys("a")
        tui.keys("looks right", "Enter")
        tui.wait_text("unmet pass criteria")  # no comparison nor audit in this plan: the GO is an override
        tui.keys("override", "Enter")
        wait_for(lambda: has_event(session, "gate_decided", "B.release"), 20, f"the decision\n{tui.text()}")
        tui.keys("q")  # detach: the TUI ends, the run goes on
        wait_for(lambda: not tui.alive(), 10, "the TUI to exit")
        status = json.loads(phasef("status", session.name, "--json", cwd=tmp_path).stdout)
        assert status["state"] in ("running", "completed")
        gate = status["gates"][0]
        assert gate["decision"] == "go" and gate["operator"] == "tess"
        tui.start("attach", session.name)  # reattach: the history is all there
        tui.wait_text("tess")
        wait_for(lambda: has_event(session, "run_finished"), 30, "the run to finish")
        assert [e["type"] for e in journal_events(session)].count("gate_decided") == 1
    finally:
        tui.kill()
        for e in journal_events(session) if "session" in locals() else []:
            if e["type"] == "session_started":
                try:
                    os.kill(e["payload"]["pid"], 15)
                except ProcessLookupError:
                    pass
