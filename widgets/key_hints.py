"""The bottom line: the keys that matter on this screen, as the operator bound them.

A plain line of text rather than Textual's Footer: it is drawn once per screen and costs nothing when screens
change, which keeps the keys answering fast (the Footer rebuilds a widget per key at every screen switch).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from widgets.status_line import StatusLine


def render_key_hints(hints: Sequence[tuple[str, str]]) -> Text:
    """``hints`` is (key as shown, what it does) pairs, in order."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, (key, description) in enumerate(hints):
        if i:
            text.append("  ")
        text.append(key, style="bold")
        text.append(f" {description}", style="dim")
    return text


class KeyHints(StatusLine):
    def show(self, hints: Sequence[tuple[str, str]]) -> None:
        self.show_text(render_key_hints(hints))
