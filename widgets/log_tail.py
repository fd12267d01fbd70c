"""The last lines of the current step's log, as plain text (a view: the app reads the file)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from widgets.theme import palette, themed

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


def render_log_blocks(title: str | None, blocks: list[tuple[str | None, tuple[str, ...]]], height: int) -> Text:
    """One block a rank or shard, each under its label with the newest lines that fit its share of ``height``."""
    if len(blocks) == 1:
        lines = blocks[0][1]
        return render_log_tail(title, lines[-max(1, height or len(lines)) :] if lines else lines)
    share = max(1, (height or 10 * len(blocks)) // len(blocks) - 1)
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, (label, lines) in enumerate(blocks):
        if i:
            text.append("\n")
        text.append(f"── {label or 'main'} ──", style="bold dim")
        text.append("\n")
        text.append_text(render_log_tail(title, lines[-share:]))
    return text


class LogTail(Static):
    """Shows ``lines`` (the newest last) under the step's name in the border title."""

    def show(self, title: str | None, lines: tuple[str, ...]) -> None:
        self.show_blocks(title, [(None, lines)])

    _shown: tuple[object, ...] | None = None

    def show_blocks(self, title: str | None, blocks: list[tuple[str | None, tuple[str, ...]]]) -> None:
        """``blocks`` as ``DataSource.log_tails`` gives them: one for a step run as one process, one a rank or shard
        otherwise, the height shared between them. (Nothing is done when nothing changed, the height and the theme
        included: the dashboard calls this each second while a clock runs.)"""
        shown = (title, blocks, self.size.height, palette())
        if shown == self._shown:
            return
        self._shown = shown
        self.border_title = f"log · {title}" if title else "log"
        # (its height is set by the dashboard's rules, not by its lines: redrawn in place, the screen not laid out)
        self.update(render_log_blocks(title, blocks, self.size.height), layout=False)
