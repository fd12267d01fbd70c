"""The real ``phasef`` in tmux, as an operator uses it: start, watch, inspect, sign, detach, reattach."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.spine_helpers import has_event, journal_events, phasef, wait_for, write_plan
from tests.tmux_helpers import Tmux
from tests.tui_helpers import sample_records, write_trace

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

KEY_PAUSE = 0.3

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


def phasef_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "phasef_tui.cli", *args]


def test_operator_flow_in_tmux(tmp_path: Path, tmux: Tmux) -> None:
    write_plan(tmp_path, PLAN)
    write_trace(tmp_path / "trace.jsonl", sample_records())
    operator = {"PHASEF_OPERATOR": "tess"}
    # `phasef` alone: starts a supervisor for ./config.toml and attaches
    tmux.start("tui", phasef_argv(), 110, 32, env=operator, cwd=tmp_path)
    try:
        tmux.wait_for("tui", "Baseline")
        sessions = tmp_path / "sessions"
        wait_for(lambda: any(sessions.glob("*/journal.jsonl")), 20, "a session")
        session = next(sessions.glob("*/journal.jsonl")).parent
        first = tmux.screen("tui")
        wait_for(lambda: has_event(session, "gate_opened", "B.release"), 30, "the gate")
        time.sleep(1)
        assert tmux.screen("tui") != first  # the stage board moved
        tmux.send("tui", "2", pause=KEY_PAUSE)
        tmux.wait_for("tui", "e2")  # the trace stream shows the records
        tmux.send("tui", "3", pause=KEY_PAUSE)
        before = tmux.screen("tui")
        tmux.send("tui", "n", pause=KEY_PAUSE)
        assert tmux.screen("tui") != before  # stepped to the next tick of the chain
        tmux.send("tui", "4", pause=KEY_PAUSE)
        tmux.wait_for("tui", "Release?")
        tmux.send("tui", "a", "looks right", "Enter", pause=KEY_PAUSE)
        tmux.wait_for("tui", "unmet pass criteria")  # no comparison nor audit in this plan: the GO is an override
        tmux.send("tui", "override", "Enter", pause=KEY_PAUSE)
        wait_for(lambda: has_event(session, "gate_decided", "B.release"), 20, f"the decision\n{tmux.screen('tui')}")
        tmux.send("tui", "q", pause=KEY_PAUSE)  # detach: the TUI ends, the run goes on
        assert tmux.wait_exit("tui", 10) == 0
        status = json.loads(phasef("status", session.name, "--json", cwd=tmp_path).stdout)
        assert status["state"] in ("running", "completed")
        gate = status["gates"][0]
        assert gate["decision"] == "go" and gate["operator"] == "tess"
        tmux.start("again", phasef_argv("attach", session.name), 110, 32, env=operator, cwd=tmp_path)
        tmux.wait_for("again", "tess")  # reattach: the history is all there
        wait_for(lambda: has_event(session, "run_finished"), 30, "the run to finish")
        assert [e["type"] for e in journal_events(session)].count("gate_decided") == 1
    finally:
        for e in journal_events(session) if "session" in locals() else []:
            if e["type"] == "session_started":
                try:
                    os.kill(e["payload"]["pid"], 15)
                except ProcessLookupError:
                    pass
