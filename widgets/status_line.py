"""A one-line bar of text that redraws only when its text changes, and never asks for a new layout.

The bars around the trace stream are refreshed at the frame rate; a plain ``Static.update`` would re-lay-out the
screen every frame even when nothing changed.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class StatusLine(Static):
    _shown: Text | None = None

    def show_text(self, text: Text) -> None:
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)
