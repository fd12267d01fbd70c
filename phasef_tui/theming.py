"""The TUI's theme: ``[tui] theme = "textual-light"`` in config.toml, any theme Textual ships (or the operator picks
one from the command palette); ``NO_COLOR`` set in the environment turns colour off whatever the theme.

Textual applies the theme to the TCSS (``$accent``, ``$error`` ...); ``apply_palette`` hands the same theme's colours
to the Rich renderables of the widgets (``widgets.theme``), so both change together.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from phasef_tui.keys import TuiRead, read_tui
from pipeline.problems import Problem

if TYPE_CHECKING:
    from textual.app import App

DARK, LIGHT = "textual-dark", "textual-light"
"""The stock themes: dark by default, light for a light terminal."""


def theme_from_config(path: Path | None, read: TuiRead | None = None) -> tuple[str | None, list[Problem], str]:
    """``[tui] theme`` of a config file (missing file or key: None), the problems found, and where the value is
    (``file:line: tui.theme``, for a message about it). Only read, never fatal: a problem is returned for the app
    to show, and the default theme is used. (``read``: the file's ``[tui]`` already read with ``read_tui``.)"""
    where = f"{path}: tui.theme"
    if path is None:
        return None, [], where
    tui, problems, lines = read if read is not None else read_tui(path)
    line = lines.get(("tui", "theme"))
    where = f"{path}:{line}: tui.theme" if line else where
    mine = [p for p in problems if p.field == "tui.theme"]
    unreadable = [Problem(p.file, p.line, f"cannot read: {p.reason}", "tui.theme") for p in problems if p.field == ""]
    return tui.theme, mine + unreadable, where


def check_theme(app: App[Any], name: str, source: str) -> str | None:
    """A message when ``name`` is no theme the app has (listing the ones it has), else None."""
    if name in app.available_themes:
        return None
    names = ", ".join(sorted(app.available_themes))
    return f"{source}: unknown theme {name!r}; themes: {names}"


def apply_palette(app: App[Any]) -> None:
    """Hand the app's current theme (or no colour, under NO_COLOR) to the widgets' Rich renderables."""
    from widgets.theme import palette_from_variables, use_palette

    use_palette(palette_from_variables(app.get_css_variables(), app.theme, no_color=bool(app.no_color)))
