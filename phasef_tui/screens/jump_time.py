"""Ask for the time to jump to in a replay (``HH:MM[:SS]`` UTC, an ISO time, or ``+/-seconds``)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from phasef_tui.keys import bindings


class JumpTimeDialog(ModalScreen[str | None]):
    """Returns the text typed, or None when cancelled."""

    BINDINGS = bindings("jump_time")

    def __init__(self, hint: str, *, blink: bool = True) -> None:
        super().__init__()
        self.hint = hint
        self.blink = blink

    def compose(self) -> ComposeResult:
        with Vertical(id="reason-box"):
            yield Label(f"Jump to a time · now at {self.hint}", id="reason-title")
            yield Input(placeholder="HH:MM[:SS] UTC, ISO time, or +/-seconds (Enter jumps, Esc cancels)", id="jump")

    def on_mount(self) -> None:
        field = self.query_one("#jump", Input)
        field.cursor_blink = self.blink
        field.focus()

    @on(Input.Submitted, "#jump")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
