"""Time travel and comparison across real sessions of the embedded default, end to end, as a user sees them.

``examples/demo-two-runs.sh`` (the script the README names) runs the embedded default ``config.toml`` three times
with ``phasef run --headless --until B`` (the reference workload against the tiny model, its deaths, the recursive
audit and the operator's gate, signed with ``phasef approve``): model seed 7 (the default as it is), model seed 8,
and, through Stage A only, another workload seed. Once per module; then the real ``phasef replay`` in a private tmux
server goes from the first event to the gate and to a death tick, and ``phasef compare`` and ``phasef sessions``
run on those sessions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.journal import read_journal
from pipeline.replay import Timeline
from tests.spine_helpers import ROOT, phasef, wait_for
from tests.tmux_helpers import Tmux

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

SCRIPT = ROOT / "examples" / "demo-two-runs.sh"
EVAL = "artifacts/A/voyager-realworld-eval/eval_report.json"


@dataclass
class Demo:
    work: Path
    out: str
    err: str
    seconds: float

    @property
    def sessions(self) -> Path:
        return self.work / "sessions"

    def report(self, session: str) -> dict:  # type: ignore[type-arg]
        return json.loads((self.sessions / session / EVAL).read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    work = tmp_path_factory.mktemp("demo")
    home = work / "home"
    home.mkdir()
    # (a module fixture runs before the per-test isolation: the user's phasef settings are left out here)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHASEF_", "OPENAI_", "TMUX"))}
    env.update(HOME=str(home), PHASEF=f"{sys.executable} -m phasef_tui.cli")
    started = time.monotonic()
    r = subprocess.run(
        ["bash", str(SCRIPT), str(work / "p")], env=env, capture_output=True, text=True, timeout=1500, cwd=work
    )
    seconds = time.monotonic() - started
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"\nthe demo's three runs took {seconds:.0f} s")
    return Demo(work / "p", r.stdout, r.stderr, seconds)


def test_the_script_runs_the_embedded_default_with_two_model_seeds(demo: Demo) -> None:
    for name, model_seed, workload_seed in (("run-seed7", 7, 1), ("run-seed8", 8, 1), ("other-tasks", 7, 2)):
        resolved = tomllib.loads((demo.sessions / name / "config.resolved.toml").read_text())
        steps = resolved["stages"]["A"]["steps"]
        assert steps["init-model"]["params"]["seed"] == model_seed
        assert steps["voyager-realworld-eval"]["params"]["seed"] == workload_seed
        report = demo.report(name)
        assert report["episodes"] == 16 and report["deaths"] > 0, report
    # the same task set for the two baselines, another one for the other workload seed
    assert demo.report("run-seed7")["taskSetHash"] == demo.report("run-seed8")["taskSetHash"]
    assert demo.report("other-tasks")["taskSetHash"] != demo.report("run-seed7")["taskSetHash"]
    assert "16 episode pairs" in demo.out
    assert "refused: taskSetHash differs" in demo.err and "(exit 2)" in demo.out
    assert "phasef_tui.cli replay run-seed7" in demo.out


def _timeline(session: Path) -> Timeline:
    tl = Timeline(session.name, session)
    tl.extend(read_journal(session / "journal.jsonl"))
    return tl


def _row(screen: str, step: str) -> str:
    return next((ln for ln in screen.splitlines() if re.search(rf"[○●✓✗◆↻■]\s+{re.escape(step)}\b", ln)), "")


def test_replay_from_the_first_event_to_the_gate_and_a_death_tick(demo: Demo, tmux: Tmux) -> None:
    session = demo.sessions / "run-seed7"
    tl = _timeline(session)
    count = len(tl)
    gate = tl.marks["gate"][0]
    assert tl.events[gate].type == "gate_opened" and tl.events[gate].key == "B.baseline-gate"
    death = max(i for i in tl.marks["death"] if i < gate)  # the last death tick before the gate
    assert tl.marks["death"][0] < death  # (more than one: the next and the previous one are different ticks)
    tick = tl.events[death]
    assert tick.type == "step_progress" and tick.key == "A.voyager-realworld-eval"
    assert tick.payload.get("outcome") == "death" or tick.payload.get("deaths", 0) > 0, tick.payload
    report = demo.report("run-seed7")

    argv = [sys.executable, "-m", "phasef_tui.cli", "replay", "run-seed7", "--as", "ann"]
    tmux.start("r", argv, 120, 36, cwd=demo.work)

    def screen() -> str:
        return tmux.screen("r")

    def keys(*names: str) -> None:
        tmux.send("r", *names, pause=0.3)

    # the first event: nothing has run yet
    wait_for(lambda: f" 1/{count} " in screen() and "session_started" in screen(), 60, f"the first event:\n{screen()}")
    assert "REPLAY" in screen() and "no gate waiting" in screen()
    for step in ("init-model", "voyager-realworld-eval", "recursive-audit", "baseline-gate"):
        assert "○" in _row(screen(), step), (step, screen())

    # the next death tick: the first one, early in the evaluation
    first_death = tl.marks["death"][0]
    keys("m", "m", "m", "m", ">")  # landmark kind: any -> failure -> gate -> stage -> death
    wait_for(lambda: f" {first_death + 1}/{count} " in screen(), 20, f"the first death:\n{screen()}")
    assert "jump: death" in screen() and "step_progress A.voyager-realworld-eval" in screen()
    assert "●" in _row(screen(), "voyager-realworld-eval") and "○" in _row(screen(), "baseline-gate")
    assert "no gate waiting" in screen()

    # the next gate: the baseline gate opening, waiting for a decision that came later
    keys("m", "m", "m", ">")  # death -> any -> failure -> gate
    wait_for(lambda: "gate_opened B.baseline-gate" in screen(), 20, f"the gate:\n{screen()}")
    assert f" {gate + 1}/{count} " in screen() and "jump: gate" in screen()
    assert "1 gate waiting" in screen() and "◆" in _row(screen(), "baseline-gate")
    for step in ("init-model", "voyager-realworld-eval", "recursive-audit"):
        assert "✓" in _row(screen(), step), (step, screen())
    deaths_line = next(ln for ln in screen().splitlines() if "A.voyager-realworld-eval deaths" in ln)
    assert deaths_line.rstrip().endswith(f" {report['deaths']}"), deaths_line
    keys("4")  # the Audit screen as it was: the offline auditors' verdict, no decision yet
    shown = ("gate B.baseline-gate", "waiting", "INVALID")  # (the gate's line and the verdicts': wait for all)
    wait_for(lambda: all(text in screen() for text in shown), 20, f"the audit screen:\n{screen()}")
    assert "demo" not in screen() and "OVERRIDE" not in screen()  # signed after this point

    # the previous death tick (the last before the gate): the evaluation still running, Stage B not started
    keys("1", "m", "m", "<")  # gate -> stage -> death
    wait_for(lambda: "jump: death" in screen() and f" {death + 1}/{count} " in screen(), 20, f"death:\n{screen()}")
    assert "step_progress A.voyager-realworld-eval" in screen()
    assert "●" in _row(screen(), "voyager-realworld-eval") and "○" in _row(screen(), "recursive-audit")
    assert "no gate waiting" in screen() and "A.voyager-realworld-eval deaths" not in screen()

    # back to live: the decision signed by the script's operator
    keys("F")
    wait_for(lambda: "LIVE" in screen() and "run_finished" in screen(), 20, f"live:\n{screen()}")
    keys("4")
    wait_for(lambda: "demo" in screen() and "OVERRIDE" in screen(), 20, f"the decision:\n{screen()}")
    keys("q")
    assert tmux.wait_exit("r", 20) == 0


def test_compare_pairs_the_two_runs(demo: Demo, tmp_path: Path) -> None:
    r = phasef("compare", "run-seed7", "run-seed8", "--json", cwd=demo.work)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "compared" and doc["pairs"] == 16
    assert doc["a"]["session"] == "run-seed7" and doc["b"]["session"] == "run-seed8"
    assert doc["a"]["step"] == doc["b"]["step"] == "A.voyager-realworld-eval"
    by_name = {m["name"]: m for m in doc["metrics"]}
    for m in doc["metrics"]:
        assert set(m) >= {"name", "a", "b", "delta", "beyond_noise"}, m
        assert isinstance(m["beyond_noise"], bool)
        if m["a"] is not None and m["b"] is not None:
            assert m["delta"] == pytest.approx(m["b"] - m["a"])
    for side, name in (("a", "run-seed7"), ("b", "run-seed8")):
        report = demo.report(name)
        assert by_name["schema_violation_rate"][side] == report["schemaViolationRate"]
        assert by_name["ticks_observed"][side] == report["ticksObserved"]
        assert by_name["deaths"][side] == report["deaths"]


def test_compare_refuses_the_other_task_set(demo: Demo) -> None:
    r = phasef("compare", "run-seed7", "other-tasks", "--json", cwd=demo.work)
    assert r.returncode == 2, r.stdout
    doc = json.loads(r.stdout)
    assert doc["status"] == "refused" and doc["pairs"] == 0 and doc["metrics"] == []
    assert any("taskSetHash differs" in reason for reason in doc["refusal"]), doc["refusal"]
    assert "refused: taskSetHash differs" in r.stderr and "the runs did not use the same task set" in r.stderr


def test_sessions_lists_the_runs(demo: Demo) -> None:
    r = phasef("sessions", "--json", cwd=demo.work)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = {row["id"]: row for row in doc["sessions"]}
    assert set(rows) == {"run-seed7", "run-seed8", "other-tasks"}
    for name, row in rows.items():
        assert row["state"] == "completed" and row["error"] is None, row
        assert row["metrics_from"] == "A.voyager-realworld-eval"
        assert row["metrics"]["schema_violation_rate"] == demo.report(name)["schemaViolationRate"]
        assert row["duration_s"] > 0 and row["started"]
