"""Declared outputs stay inside the session (or the project through ``{project}/...``) and are the attempt's own;
a command of several MB still runs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import ConfigError, parse_config
from pipeline.engine import Engine, RunResult
from tests.spine_helpers import phasef, write_plan


def plan(command: str, outputs: list[str]) -> str:
    return (
        '[stages.A]\ntitle = "A"\n\n[stages.A.steps.make]\nkind = "shell"\n'
        f"command = {json.dumps(command)}\noutputs = {json.dumps(outputs)}\n"
    )


def run(tmp_path: Path, text: str) -> tuple[RunResult, list[dict[str, Any]]]:
    session = tmp_path / "session"
    engine = Engine(parse_config(text), session_dir=session, project_dir=tmp_path)
    try:
        result = asyncio.run(engine.run())
    finally:
        engine.journal.close()
    events = [json.loads(line) for line in (session / "journal.jsonl").read_text().splitlines()]
    return result, events


def failure(events: list[dict[str, Any]]) -> str:
    failed = [e for e in events if e["type"] == "step_failed"]
    assert failed, [e["type"] for e in events]
    return str(failed[-1]["payload"]["error"])


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("../../../tmp/x.txt", "'../../../tmp/x.txt' climbs out of the session folder with '..'"),
        ("/abs/path/victim.txt", "'/abs/path/victim.txt' is an absolute path"),
        ("{project}/../victim.txt", "'{project}/../victim.txt' climbs out of the project folder"),
        ("~/victim.txt", "'~/victim.txt' is an absolute path"),
    ],
)
def test_config_check_names_the_line_of_an_output_outside(tmp_path: Path, output: str, message: str) -> None:
    text = plan("true", ["out/ok.txt", output])
    path = write_plan(tmp_path, text)
    r = phasef("config", "check", str(path), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    line = text.splitlines().index(f"outputs = {json.dumps(['out/ok.txt', output])}") + 1
    assert f"{path}:{line}: stages.A.steps.make.outputs:" in r.stderr
    assert message in r.stderr


def test_outputs_inside_are_accepted() -> None:
    cfg = parse_config(plan("true", ["out/x.txt", "{session}/y", "a/../b", "{project}/results/z.json"]))
    assert cfg.step("A.make").outputs[-1] == "{project}/results/z.json"
    with pytest.raises(ConfigError):
        parse_config(plan("true", ["out/{project}/x"]))


def test_an_output_the_attempt_did_not_write_fails_the_step_with_its_name(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("not the step's\n")
    time.sleep(0.2)  # written before the attempt, as any file the step did not make
    result, events = run(tmp_path, plan("true", ["{project}/victim.txt"]))
    assert result.exit_code == 1
    error = failure(events)
    assert error == f"declared output not created or changed by this attempt: {victim}"
    assert not any(e["type"] == "step_succeeded" for e in events)
    assert victim.read_text() == "not the step's\n"


def test_an_output_the_attempt_rewrote_or_created_is_taken(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "old.txt").write_text("old\n")
    command = "echo new > {project}/results/old.txt && mkdir -p out && echo x > out/new.txt"
    result, events = run(tmp_path, plan(command, ["{project}/results/old.txt", "out/new.txt"]))
    assert result.exit_code == 0, result
    succeeded = [e for e in events if e["type"] == "step_succeeded"]
    assert set(succeeded[0]["payload"]["outputs"]) == {str(tmp_path / "results" / "old.txt"), "out/new.txt"}


def test_a_symlink_out_of_the_session_is_refused_and_its_target_not_hashed(tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("someone else's\n")
    try:
        command = f"mkdir -p out && ln -s {outside} out/link.txt"
        result, events = run(tmp_path, plan(command, ["out/link.txt"]))
    finally:
        outside.unlink()
    assert result.exit_code == 1
    assert failure(events) == f"declared output 'out/link.txt' resolves to {outside}, outside the session folder"
    assert not any(e["type"] == "step_succeeded" for e in events)


def test_a_symlinked_folder_out_of_the_session_fails_before_the_step_runs(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    session = tmp_path / "session"
    session.mkdir()
    (session / "out").symlink_to(elsewhere)
    result, events = run(tmp_path, plan("echo hi > out/x.txt", ["out/x.txt"]))
    assert result.exit_code == 1
    assert failure(events) == (
        f"declared output 'out/x.txt' resolves to {elsewhere / 'x.txt'}, outside the session folder"
    )
    assert not any(e["type"] == "step_started" for e in events)
    assert not (elsewhere / "x.txt").exists()


def test_a_command_of_four_megabytes_runs(tmp_path: Path) -> None:
    filler = "x" * (4 << 20)
    command = f": '{filler}'; mkdir -p out && printf '%s' '{filler[:10]}' > out/big.txt"
    result, events = run(tmp_path, plan(command, ["out/big.txt"]))
    assert result.exit_code == 0, result
    assert (tmp_path / "session" / "out" / "big.txt").read_text() == "x" * 10
    started = next(e for e in events if e["type"] == "step_started")
    assert started["payload"]["command"].endswith(f"... ({len(command) - 2000} more characters, run from a file)")
    assert started["payload"]["argv"] == ["/bin/sh", str(tmp_path / "session" / "run" / "A.make.1.command.sh")]
