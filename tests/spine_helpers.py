"""Helpers for tests that drive the real ``phasef`` command in child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
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


def phasef(
    *args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phasef_tui.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def spawn(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "phasef_tui.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


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
