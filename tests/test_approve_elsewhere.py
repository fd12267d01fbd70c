"""The waiting hint of a headless run is a command that works from any folder: it names the session folder."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

PLAN = """
[project]
name = "approve-elsewhere"

[stages.A]
title = "one gate"

[stages.A.steps.review]
kind = "gate"
prompt = "ok?"
timeout = 120
"""


def test_the_waiting_hint_approves_from_another_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.toml").write_text(PLAN)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PHASEF_CONFIG"}
    run = subprocess.Popen(
        [sys.executable, "-m", "phasef_tui.cli", "run", "--headless", "--plain"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert run.stdout is not None
        hint = None
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = run.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "WAITING for a decision" in line:
                hint = line[line.index("phasef approve") :].strip()
                break
        assert hint is not None, lines
        argv = shlex.split(hint)
        assert argv[:2] == ["phasef", "approve"] and Path(argv[2]).is_absolute()
        # a one-gate plan has no comparison nor audit: the hint offers the override its GO needs
        assert argv[-1] == "[--override]"
        argv = [a.replace("go|no-go", "go").replace("NAME", "ann").replace("TEXT", "fine") for a in argv[2:-1]]
        argv.append("--override")
        done = subprocess.run(
            [sys.executable, "-m", "phasef_tui.cli", "approve", *argv],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "A.review: GO signed by ann" in done.stdout
        assert run.wait(timeout=60) == 4  # GO-OVERRIDE
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
