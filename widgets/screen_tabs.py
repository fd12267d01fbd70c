"""The top line: the screens with their keys (the active one highlighted), and what is being watched."""

from __future__ import annotations

from rich.text import Text

from widgets.status_line import StatusLine
from widgets.theme import themed


def render_tabs(tabs: tuple[tuple[str, str], ...], active: str, title: str, note: str = "") -> Text:
    """``tabs`` is (key, name) pairs; the one whose name is ``active`` is highlighted."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for key, name in tabs:
        style = "bold reverse" if name == active else ""
        text.append(f" {key} ", style=f"{style} bold".strip())
        text.append(f"{name} ", style=style)
    text.append(" ")
    if note:
        text.append(f"{note}  ", style=themed("warn.b"))
    text.append(title, style="dim")
    return text


class ScreenTabs(StatusLine):
    def show(self, tabs: tuple[tuple[str, str], ...], active: str, title: str, note: str = "") -> None:
        self.show_text(render_tabs(tabs, active, title, note))
