"""Themes and the command palette (Pilot): Textual's own commands beside phasef's, every colour from the theme,
``[tui] theme`` in config.toml, the stock dark and light themes, NO_COLOR."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandList, CommandPalette

from phasef_tui.app import PhasefApp, load_tui_settings
from tests.tui_helpers import FIXED_NOW, ConstructedSource, constructed_session, until
from widgets import theme
from widgets.stage_board import render_stage_board

ROOT = Path(__file__).resolve().parents[1]
SIZE = (100, 30)


def session_app(**kwargs: Any) -> PhasefApp:
    return PhasefApp(
        ConstructedSource(constructed_session()), blink=False, initial="dashboard", clock=lambda: FIXED_NOW, **kwargs
    )


def palette_prompts(app: PhasefApp) -> list[str]:
    results = app.screen.query_one(CommandList)
    return [str(results.get_option_at_index(i).prompt) for i in range(results.option_count)]


async def test_palette_keeps_textual_commands_next_to_phasef_commands() -> None:
    app = session_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        assert await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"theme")
        assert await until(pilot, lambda: any("Theme" in p for p in palette_prompts(app)))
        for query in ("keys", "screenshot", "quit"):  # "Maximize" shows only while a maximizable widget has focus
            await pilot.press(*["backspace"] * 12, *query)
            assert await until(pilot, lambda q=query: any(q in p.lower() for p in palette_prompts(app))), query
        await pilot.press(*["backspace"] * 12, *"audit")
        assert await until(pilot, lambda: any("Go to Audit" in p for p in palette_prompts(app)))


async def test_theme_from_config_and_a_change_of_theme_recolours_the_widgets(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[tui]\ntheme = "textual-light"\n')
    app = session_app(**load_tui_settings(config))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        assert app.theme == "textual-light" and theme.palette().name == "textual-light"
        light = app.get_css_variables()["text-error"].upper()
        assert theme.themed("bad.b") == f"bold {light}"
        app.theme = "textual-dark"  # as the palette's "Theme" command does
        assert await until(pilot, lambda: theme.palette().name == "textual-dark")
        dark = app.get_css_variables()["text-error"].upper()
        assert dark != light and theme.themed("bad") == dark
        board = render_stage_board(constructed_session().stages, "A.eval", FIXED_NOW, 60)
        step_row = board.split("\n")[1]  # a succeeded step: its icon is the row's first cell
        assert [span.style for span in step_row.spans if (span.start, span.end) == (0, 1)] == [theme.themed("good")]


async def test_an_unknown_theme_is_named_with_the_themes_there_are(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[tui]\ntheme = "neon"\n')
    app = session_app(**load_tui_settings(config))
    async with app.run_test(size=SIZE) as pilot:
        assert await until(pilot, lambda: any("unknown theme 'neon'" in str(n.message) for n in app._notifications))
        message = next(str(n.message) for n in app._notifications if "neon" in str(n.message))
        assert message.startswith(f"{config}:2: tui.theme: unknown theme 'neon'"), message
        assert "textual-light" in message and "textual-dark" in message
        assert app.theme == "textual-dark"


def test_a_theme_that_is_not_a_name_is_named_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[project]\nname = "x"\n\n[tui]\ntheme = 3\n')
    settings = load_tui_settings(config)
    assert settings["theme"] is None
    assert [str(p) for p in settings["keymap_problems"]] == [
        f"{config}:5: tui.theme: must be the name of a theme (a string)"
    ]


async def test_no_color_turns_colour_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = session_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        assert app.no_color
        assert theme.themed("bad.b") == "bold" and theme.themed("good") == "" and theme.themed("selected") == "reverse"
        assert any(type(f).__name__ in ("Monochrome", "NoColor") for f in app._filters), "Textual's own filter"
        strips = app.screen.query_one("#board").render_lines(app.screen.query_one("#board").region.reset_offset)
        colours = {seg.style.color for strip in strips for seg in strip if seg.style and seg.style.color}
        triplets = {c.get_truecolor() for c in colours}
        assert triplets and all(t.red == t.green == t.blue for t in triplets), f"hues left: {triplets}"


def test_no_hard_coded_colours_in_widgets_or_the_app() -> None:
    """Every colour comes from the theme: no colour names or hex values in Rich styles or TCSS."""
    colour = re.compile(
        r"""["'][^"'\n]*\b(red|green|yellow|cyan|magenta|blue|white|black|grey\d*|gray\d*|bright_\w+|orange|purple)\b"""
        r"""[^"'\n]*["']|#[0-9a-fA-F]{6}\b|\brgb\("""
    )
    found = []
    for folder in ("widgets", "phasef_tui"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".tcss") or path.name == "theme.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0] if path.suffix == ".py" and "#" in line and '"#' not in line else line
                for match in colour.finditer(code):
                    if "style" in code or "color" in code or "background" in code or path.suffix == ".tcss":
                        found.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert not found, "\n".join(found)
