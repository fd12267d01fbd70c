"""Builtin steps may name only registered step functions: phasef's own, or ones the project declares."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, parse_config
from pipeline.registry import BUILTIN_FUNCTIONS, load_object
from tests.spine_helpers import phasef, write_plan

STEP = '[stages.A]\ntitle = "A"\n[stages.A.steps.x]\nkind = "builtin"\nfunction = "{function}"\n'


@pytest.mark.parametrize("function", ["os:system", "subprocess:run", "builtins:eval", "tests.spine_steps:slow_saver"])
def test_an_importable_callable_that_is_not_registered_is_refused_with_its_line(function: str) -> None:
    text = "# a comment first\n" + STEP.format(function=function)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "plan.toml")
    assert str(info.value).startswith(
        f"plan.toml:6: stages.A.steps.x.function: {function!r} is not a registered step function"
    )
    assert "[project] step_functions" in str(info.value)


def test_a_function_the_project_declares_is_accepted() -> None:
    text = '[project]\nstep_functions = ["tests.spine_steps:slow_saver"]\n' + STEP.format(
        function="tests.spine_steps:slow_saver"
    )
    cfg = parse_config(text, "plan.toml")
    assert cfg.project.step_functions == ["tests.spine_steps:slow_saver"]


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        ("tests.spine_steps:nothing_here", "cannot load 'tests.spine_steps:nothing_here'"),
        ("tests.no_such_module:fn", "cannot load 'tests.no_such_module:fn': ModuleNotFoundError"),
        ("tests.spine_helpers:ROOT", "'tests.spine_helpers:ROOT' is not callable"),
        ("no-colon", "cannot load 'no-colon': ValueError"),
    ],
)
def test_a_declared_function_must_load_and_be_callable(declared: str, problem: str) -> None:
    text = f'[project]\nname = "p"\nstep_functions = ["{declared}"]\n' + STEP.format(function=declared)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "plan.toml")
    assert f"plan.toml:3: project.step_functions: {problem}" in str(info.value)


def test_every_registered_builtin_function_loads_and_is_callable() -> None:
    for name in BUILTIN_FUNCTIONS:
        assert callable(load_object(name)), name


def test_config_check_cli_refuses_os_system(tmp_path: Path) -> None:
    write_plan(tmp_path, STEP.format(function="os:system"))
    r = phasef("config", "check", "config.toml", cwd=tmp_path)
    assert r.returncode == 2
    assert "config.toml:5: stages.A.steps.x.function: 'os:system' is not a registered step function" in r.stderr
    r = phasef("run", "--headless", "--session", "s", cwd=tmp_path)
    assert r.returncode == 2 and "'os:system' is not a registered step function" in r.stderr
    assert not (tmp_path / "sessions" / "s" / "journal.jsonl").exists()
