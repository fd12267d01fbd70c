"""Ask the operator for the reason of a decision before it is signed (a rejection without a reason is refused)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Label

from phasef_tui.keys import bindings
from phasef_tui.screens.dialog import InputDialog


class ReasonDialog(InputDialog[str | None]):
    """Returns the reason typed (stripped), or None when cancelled."""

    BINDINGS = bindings("reason")
    INPUT_ID = "reason-input"

    def __init__(self, title: str, *, required: bool, blink: bool = True) -> None:
        super().__init__(blink=blink)
        self.title_text = title
        self.required = required

    def compose(self) -> ComposeResult:
        with Vertical(id="reason-box"):
            yield Label(self.title_text, id="reason-title")
            yield Input(placeholder="reason (Enter signs, Esc cancels)", id="reason-input")
            yield Label("", id="reason-error")

    @on(Input.Submitted, "#reason-input")
    def _submitted(self, event: Input.Submitted) -> None:
        reason = event.value.strip()
        if self.required and not reason:
            self.query_one("#reason-error", Label).update("a reason is required")
            return
        self.dismiss(reason)

    def action_cancel(self) -> None:
        self.dismiss(None)
