"""``[tui]`` read on its own for the viewer (``pipeline.config_section.read_tui``): a valid section without
importing pydantic or the plan's config model (the viewer's start-up), a bad one with the model's own messages —
the same values and problems, file:line and field, as ``pipeline.config.read_section(path, "tui")``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import read_section
from pipeline.config_section import TuiValues, read_tui

REPO = Path(__file__).resolve().parents[1]

CASES = {
    "valid": '[project]\nname = "x"\n\n[tui]\ntheme = " textual-light "\n[tui.keys]\n"traces.follow" = " F , f "\n',
    "no tui": '[project]\nname = "x"\n',
    "theme not a name": "[tui]\ntheme = 3\n",
    "blank theme": '[tui]\ntheme = ""\n[tui.keys]\n"traces.follow" = " F "\n"audit.approve" = ""\n',
    "unknown key": '[tui]\ncolour = "red"\ntheme = "textual-dark"\n',
    "key not a string": '[tui.keys]\n"audit.approve" = 3\n"traces.follow" = "F"\n',
    "keys not a table": "[tui]\nkeys = 3\n",
    "tui not a table": "tui = 3\n",
    "rest of the plan invalid": '[stages.a]\nnope = 1\n\n[tui]\ntheme = "textual-light"\n',
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_viewer_reads_tui_as_the_config_model_does(tmp_path: Path, name: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CASES[name], encoding="utf-8")
    light, model = read_tui(config), read_section(config, "tui")
    assert light.value == TuiValues(model.value.theme, dict(model.value.keys))
    assert light.issues == model.issues
    assert light.lines == model.lines
    if name == "valid":
        assert light.value == TuiValues("textual-light", {"traces.follow": "F,f"}) and not light.issues
    if name == "key not a string":
        assert light.value.keys == {"traces.follow": "F"}
        assert [(p.line, p.field) for p in light.issues] == [(2, "tui.keys.audit.approve")]


def test_a_missing_file_is_the_default(tmp_path: Path) -> None:
    assert read_tui(tmp_path / "none.toml", missing_ok=True).value == TuiValues()


def test_the_viewer_settings_import_neither_pydantic_nor_the_config_model(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text((REPO / "config.toml").read_text() + '\n[tui]\ntheme = "textual-light"\n[tui.keys]\n"q" = "x"\n')
    code = (
        "import sys\nfrom pathlib import Path\nfrom phasef_tui.app import load_tui_settings\n"
        f"s = load_tui_settings(Path({str(config)!r}))\n"
        "assert s['theme'] == 'textual-light', s\n"
        "print(sorted(m for m in sys.modules if m == 'pydantic' or m.startswith('pipeline.config')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split("\n")[0] == "['pipeline.config_section']", out.stdout + out.stderr
