"""``[auditors.*]``, ``[models.*]`` and ``[tui]`` are typed sections of the config model: ``phasef config check``
names a bad key in them with file:line, and the readers of one section (audit step, viewer, session lookup) go
through the same model."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import tomli_w

from phasef_tui.commands._common import sessions_root_for
from phasef_tui.keys import keymap_from_config
from phasef_tui.theming import theme_from_config
from pipeline.audit.params import ApiAuditor, CliAuditor
from pipeline.audit.step import load_auditors
from pipeline.config import TuiConfig, dump_config, parse_config, read_section
from pipeline.jobs.context import StepFailed
from tests.spine_helpers import phasef

PLAN = """
[stages.a]
title = "A"

[stages.a.steps.s]
kind = "shell"
command = "true"
retries = 2
"""

SECTIONS = """\
[project]
name = "x"
sessions_dir = "runs"

[auditors.gem]
kind = "cli"
command = "gemini -y"

[auditors.local]
kind = "api"
base_url = "http://127.0.0.1:9/v1"
model = "m"

[models.base]
path = "models/base"
title = "the base model"

[tui]
theme = "textual-light"

[tui.keys]
"traces.follow" = "F"
"""


def check(config: Path) -> tuple[int, list[str]]:
    r = phasef("config", "check", "-c", str(config), cwd=config.parent)
    return r.returncode, [line for line in r.stderr.splitlines() if line.startswith("error:")]


def test_config_check_names_bad_keys_of_auditors_models_and_tui_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[auditors.gem]\n"  # 1
        'kind = "cli"\n'  # 2
        'command = "gemini -y"\n'  # 3
        "colour = 1\n"  # 4
        "\n"  # 5
        "[models.base]\n"  # 6
        'path = "models/base"\n'  # 7
        "size = 3\n"  # 8
        "\n"  # 9
        "[tui]\n"  # 10
        "theme = 3\n"  # 11
        "colour = 'red'\n"  # 12
        "\n"  # 13
        "[tui.keys]\n"  # 14
        '"traces.follow" = "F"\n'  # 15
        '"audit.approve" = 3\n'  # 16
        '"traces.nope" = "x"\n' + PLAN,  # 17
        encoding="utf-8",
    )
    code, errors = check(config)
    assert code == 2
    assert errors == [
        f"error: {config}:4: auditors.gem.colour: unknown key",
        f"error: {config}:8: models.base.size: unknown key",
        f"error: {config}:11: tui.theme: Value error, must be the name of a theme (a string)",
        f'error: {config}:16: tui.keys.audit.approve: Value error, expected a key such as "ctrl+f" or "F", got 3',
        f"error: {config}:12: tui.colour: unknown key",
        f"error: {config}:17: tui.keys.traces.nope: unknown binding id (see the help screen, '?', for every id)",
    ]


def test_config_check_names_a_missing_auditor_key_and_a_missing_model_path(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[auditors.gem]\nkind = "cli"\n\n[models.base]\ntitle = "t"\n' + PLAN, encoding="utf-8")
    code, errors = check(config)
    assert code == 2
    assert errors == [
        f"error: {config}:1: auditors.gem.command: required key is missing",
        f"error: {config}:4: models.base.path: required key is missing",
    ]


def test_good_sections_pass_the_check_and_survive_the_resolved_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(SECTIONS + PLAN, encoding="utf-8")
    code, errors = check(config)
    assert (code, errors) == (0, [])
    cfg = parse_config(config.read_text(encoding="utf-8"), str(config))
    assert isinstance(cfg.auditors["gem"], CliAuditor) and isinstance(cfg.auditors["local"], ApiAuditor)
    assert cfg.models["base"].path == "models/base"
    assert cfg.tui == TuiConfig(theme="textual-light", keys={"traces.follow": "F"})
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(tomli_w.dumps(dump_config(cfg)), encoding="utf-8")
    again = parse_config(resolved.read_text(encoding="utf-8"), str(resolved))
    assert again.auditors == cfg.auditors and again.models == cfg.models and again.tui == cfg.tui
    chosen = load_auditors(resolved, ["gem", "local"])
    assert chosen == {"gem": cfg.auditors["gem"], "local": cfg.auditors["local"]}


def test_the_tui_section_is_read_alone_when_the_rest_of_the_plan_is_invalid(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(SECTIONS + "\n[stages.a]\nnope = 1\n", encoding="utf-8")
    assert check(config)[0] == 2
    assert keymap_from_config(config) == ({"traces.follow": "F"}, [])
    theme, problems, where = theme_from_config(config)
    assert (theme, problems, where) == ("textual-light", [], f"{config}:19: tui.theme")
    args = argparse.Namespace(config=str(config), sessions=None)
    assert sessions_root_for(args) == tmp_path / "runs"


def test_read_section_keeps_good_entries_and_reports_each_bad_one(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[tui]\ntheme = ""\n[tui.keys]\n"traces.follow" = " F "\n"audit.approve" = ""\n', encoding="utf-8"
    )
    section = read_section(config, "tui")
    assert section.value == TuiConfig(theme=None, keys={"traces.follow": "F"})
    assert [(i.line, i.field) for i in section.issues] == [(2, "tui.theme"), (5, "tui.keys.audit.approve")]
    assert read_section(config, "models").value == {} and read_section(config, "stages").value is None
    missing = read_section(tmp_path / "none.toml", "tui", missing_ok=True)
    assert missing.value == TuiConfig() and missing.issues == []


def test_the_audit_step_refuses_a_bad_auditor_it_names_with_file_and_line_and_runs_with_a_good_one(
    tmp_path: Path,
) -> None:
    config = tmp_path / "resolved.toml"
    config.write_text(
        '[auditors.bad]\nkind = "cli"\ncommand = "x"\ntimeout = "soon"\n\n[auditors.good]\nkind = "cli"\n'
        'command = "gemini -y"\n',
        encoding="utf-8",
    )
    with pytest.raises(StepFailed, match=rf"^{config}:4: auditors\.bad\.timeout: "):
        load_auditors(config, ["good", "bad"])
    assert list(load_auditors(config, ["good"])) == ["good"]
    with pytest.raises(StepFailed, match=r"auditor 'other' is not defined in \[auditors\] \(defined: bad, good\)"):
        load_auditors(config, ["other"])
    with pytest.raises(StepFailed, match="no resolved config"):
        load_auditors(None, ["good"])
