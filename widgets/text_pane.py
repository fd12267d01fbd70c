"""A focusable scroll around one ``Static``: the panes that show one thing at a time (a record, a chain's tick)."""

from __future__ import annotations

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Static


class TextPane(VerticalScroll, can_focus=True):
    """``show_text`` replaces what the pane shows and scrolls back to its top; the ``Static`` has id ``BODY_ID``."""

    BODY_ID = "text-pane-body"
    _pending: RenderableType = ""
    """What to show once composed (a pane can be given its text before it is mounted)."""

    def compose(self) -> ComposeResult:
        yield Static(self._pending, id=self.BODY_ID)

    def show_text(self, renderable: RenderableType) -> None:
        try:
            body = self.query_one(f"#{self.BODY_ID}", Static)
        except NoMatches:  # not composed yet (a pane mounted on first use): its body starts with this
            self._pending = renderable
            return
        body.update(renderable)
        self.scroll_home(animate=False)
