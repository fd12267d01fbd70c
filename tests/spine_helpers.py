"""Helpers for tests that drive the real ``phasef`` command in child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


ONE_GATE_PROMPT = "Release the build?"
ONE_GATE_PLAN = f"""
[stages.A]
title = "Work"

[stages.A.steps.make]
kind = "shell"
command = "mkdir -p out && echo evidence > out/evidence.txt"
outputs = ["out/evidence.txt"]

[stages.B]
title = "Decision"
needs = ["A"]

[stages.B.steps.release]
kind = "gate"
prompt = "{ONE_GATE_PROMPT}"
evidence = ["out/evidence.txt"]
timeout = 3600
"""
"""A shell step and a gate on its output: the smallest plan an operator signs (TUI, SSH, benchmarks)."""


MAKE_AND_GATE_PLAN = """
[stages.A]
title = "A"

[stages.A.steps.make]
kind = "shell"
command = "echo evidence > e.txt"
outputs = ["e.txt"]

[stages.A.steps.gate]
kind = "gate"
needs = ["make"]
evidence = ["e.txt"]
timeout = {timeout}
"""
"""A shell step that writes ``e.txt`` and the gate ``A.gate`` on it; ``.format(timeout=SECONDS)`` sets the gate's
timeout."""


def work_then_gate_plan(command: str) -> str:
    """Stage A: the shell step ``A.work`` running ``command``, then the gate ``A.gate`` after it."""
    return f"""
[stages.A]
title = "A"
[stages.A.steps.work]
kind = "shell"
command = "{command}"
[stages.A.steps.gate]
kind = "gate"
needs = ["work"]
"""


def phasef(
    *args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``phasef ARGS`` in ``cwd``, its output captured (``stdin``: e.g. ``subprocess.DEVNULL``; default inherited)."""
    return subprocess.run(
        [sys.executable, "-m", "phasef_tui.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=stdin,
    )


def approve(
    cwd: Path, session: str, gate: str, decision: str, who: str, reason: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``phasef approve SESSION GATE --decision D --as WHO --reason R [EXTRA...]`` (``--override`` for a GO over unmet
    pass criteria)."""
    return phasef("approve", session, gate, "--decision", decision, "--as", who, "--reason", reason, *extra, cwd=cwd)


def spawn(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "phasef_tui.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@contextmanager
def headless_run(project: Path, session: str, *options: str) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``phasef run --headless [OPTIONS] --session NAME`` in the background, and its session folder; the run is
    killed on the way out if it is still going (a failed assertion must not leave a supervisor behind)."""
    proc = spawn("run", "--headless", *options, "--session", session, cwd=project)
    try:
        yield proc, project / "sessions" / session
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def journal_events(session_dir: Path) -> list[dict[str, Any]]:
    path = session_dir / "journal.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def has_event(session_dir: Path, type_: str, step: str | None = None) -> bool:
    return any(
        e["type"] == type_ and (step is None or f"{e.get('stage')}.{e.get('step')}" == step)
        for e in journal_events(session_dir)
    )


def write_plan(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(text)
    return path
