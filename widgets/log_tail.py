"""The last lines of the current step's log, as plain text (a view: the app reads the file)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from widgets.theme import themed

ANSI_FREE_LIMIT = 400
"""Characters of one log line shown; longer lines are cut (the full log stays on disk)."""


def render_log_tail(title: str | None, lines: tuple[str, ...]) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    if not lines:
        text.append("(no log output)" if title else "(no step selected)", style="dim")
        return text
    for i, line in enumerate(lines):
        if i:
            text.append("\n")
        clean = Text.from_ansi(line[:ANSI_FREE_LIMIT]).plain
        style = themed("bad") if ("Traceback" in clean or "Error" in clean or "error:" in clean) else ""
        text.append(clean, style=style)
    return text


class LogTail(Static):
    """Shows ``lines`` (the newest last) under the step's name in the border title."""

    def show(self, title: str | None, lines: tuple[str, ...]) -> None:
        self.border_title = f"log · {title}" if title else "log"
        visible = lines[-max(1, self.size.height or len(lines)) :] if lines else lines
        self.update(render_log_tail(title, visible))
