"""Ask for the time to jump to in a replay (``HH:MM[:SS]`` UTC, an ISO time, or ``+/-seconds``)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Label

from phasef_tui.keys import bindings
from phasef_tui.screens.dialog import InputDialog


class JumpTimeDialog(InputDialog[str | None]):
    """Returns the text typed, or None when cancelled."""

    BINDINGS = bindings("jump_time")
    INPUT_ID = "jump"

    def __init__(self, hint: str, *, blink: bool = True) -> None:
        super().__init__(blink=blink)
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(id="reason-box"):
            yield Label(f"Jump to a time · now at {self.hint}", id="reason-title")
            yield Input(placeholder="HH:MM[:SS] UTC, ISO time, or +/-seconds (Enter jumps, Esc cancels)", id="jump")

    @on(Input.Submitted, "#jump")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
