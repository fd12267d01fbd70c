"""config.toml validation: every problem named with file:line: key, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, key_lines, load_config, parse_config
from tests.spine_helpers import ROOT, phasef, write_plan

GOOD = """
[project]
name = "t"

[stages.A]
title = "A"

[stages.A.steps.one]
kind = "shell"
command = "true"

[stages.B]
title = "B"
needs = ["A"]

[stages.B.steps.two]
kind = "shell"
command = "true"
"""


def test_default_and_sample_configs_are_valid() -> None:
    for path in (ROOT / "config.toml", ROOT / "examples" / "sample-shell.toml"):
        if path.exists():
            cfg = load_config(path)
            assert cfg.stages


def test_dependencies_follow_stage_needs_and_sequential() -> None:
    cfg = parse_config(GOOD + '\n[stages.B.steps.three]\nkind = "shell"\ncommand = "true"\nneeds = ["two"]\n')
    deps = cfg.dependencies()
    assert deps["A.one"] == []
    assert deps["B.two"] == ["A.one"]
    assert deps["B.three"] == ["A.one", "B.two"]


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace('command = "true"\n\n[stages.B]', 'command = "true"\ncolour = "red"\n\n[stages.B]')
    path = write_plan(tmp_path, text)
    r = phasef("config", "check", str(path), cwd=tmp_path)
    assert r.returncode == 2
    line = text.splitlines().index('colour = "red"') + 1
    assert f"{path}:{line}: stages.A.steps.one.colour: unknown key" in r.stderr


def test_wrong_type_names_line(tmp_path: Path) -> None:
    text = GOOD.replace(
        '[stages.A.steps.one]\nkind = "shell"', '[stages.A.steps.one]\nkind = "shell"\nretries = "many"'
    )
    path = write_plan(tmp_path, text)
    r = phasef("config", "check", str(path), cwd=tmp_path)
    assert r.returncode == 2
    line = text.splitlines().index('retries = "many"') + 1
    assert f":{line}: stages.A.steps.one.retries:" in r.stderr
    assert "integer" in r.stderr


def test_cycle_is_reported(tmp_path: Path) -> None:
    text = GOOD.replace('[stages.A]\ntitle = "A"', '[stages.A]\ntitle = "A"\nneeds = ["B"]')
    path = write_plan(tmp_path, text)
    r = phasef("config", "check", str(path), cwd=tmp_path)
    assert r.returncode == 2
    assert "dependency cycle" in r.stderr
    assert "A.one" in r.stderr and "B.two" in r.stderr


def test_missing_references_and_kind_rules() -> None:
    bad = GOOD + '\n[stages.B.steps.x]\nkind = "shell"\ncommand = "true"\nneeds = ["nope"]\npool = "gpu"\n'
    bad += '\n[stages.B.steps.y]\nkind = "gate"\ncommand = "true"\n'
    bad += '\n[stages.B.steps.z]\nkind = "teleport"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(bad, "plan.toml")
    text = str(info.value)
    assert "'command' is only for shell steps" in text
    assert "unknown step kind 'teleport'" in text
    lines = bad.splitlines()
    assert f"plan.toml:{lines.index('[stages.B.steps.z]') + 1 + 1}: stages.B.steps.z.kind" in text


def test_reference_errors() -> None:
    bad = GOOD + '\n[stages.B.steps.x]\nkind = "shell"\ncommand = "true"\nneeds = ["nope"]\npool = "gpu"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(bad, "plan.toml")
    text = str(info.value)
    assert "needs missing step 'nope'" in text
    assert "unknown pool 'gpu'" in text


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write_plan(tmp_path, GOOD + "\n[stages.C\n")
    r = phasef("config", "check", str(path), cwd=tmp_path)
    assert r.returncode == 2
    assert "TOML syntax" in r.stderr and "line" in r.stderr


def test_missing_file_exit_2(tmp_path: Path) -> None:
    r = phasef("config", "check", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert r.returncode == 2
    assert "nope.toml: file not found" in r.stderr


def test_key_lines_handles_dotted_and_quoted_keys() -> None:
    lines = key_lines('[a]\nb.c = 1\n"d e" = 2\n[x."y.z"]\nw = """\nq = 3\n"""\nv = 4\n')
    assert lines[("a", "b", "c")] == 2
    assert lines[("a", "d e")] == 3
    assert lines[("x", "y.z", "w")] == 5
    assert ("x", "y.z", "q") not in lines
    assert lines[("x", "y.z", "v")] == 8


def test_help_imports_neither_mlx_nor_textual() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from phasef_tui.cli import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlx', 'mlx_lm', 'textual', 'transformers')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert r.stdout.strip() == "[]"


def test_show_prints_resolved_plan(tmp_path: Path) -> None:
    write_plan(tmp_path, GOOD)
    r = phasef("config", "show", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "[stages.B.steps.two]" in r.stdout
    assert "# B.two <- A.one" in r.stdout


def test_auditor_tables_are_validated_with_lines() -> None:
    text = GOOD + '\n[auditors.first]\nkind = "api"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\nflavour = 1\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, "plan.toml")
    line = text.splitlines().index("flavour = 1") + 1
    assert f"plan.toml:{line}: auditors.first.flavour: unknown key" in str(info.value)


def test_builtin_functions_and_their_params_are_checked() -> None:
    text = GOOD + (
        '\n[stages.B.steps.split]\nkind = "builtin"\nfunction = "pipeline.data.guard_split:run"\n'
        'params = { by = "episode", sede = 1 }\n'
        '\n[stages.B.steps.typo]\nkind = "builtin"\nfunction = "pipeline.data.nope:run"\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "plan.toml")
    lines = text.splitlines()
    message = str(info.value)
    assert (
        f"plan.toml:{lines.index('[stages.B.steps.split]') + 4}: stages.B.steps.split.params.sede: unknown key"
        in message
    )
    assert (
        f"plan.toml:{lines.index('[stages.B.steps.typo]') + 3}: stages.B.steps.typo.function: "
        "'pipeline.data.nope:run' is not a registered step function" in message
    )
