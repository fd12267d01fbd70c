"""The second confirmation of a GO at the final gate over unmet pass criteria: each one named, the word typed.

The run then ends ``GO-OVERRIDE`` (exit 4), never ``GO``; the supervisor still refuses it when the project sets
``[project] final_override = false``.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Label, Static

from phasef_tui.keys import bindings
from phasef_tui.screens.dialog import InputDialog
from widgets.session_view import CriterionView
from widgets.theme import themed
from widgets.verdict_card import render_criteria

CONFIRM_WORD = "override"


class OverrideDialog(InputDialog[bool]):
    """Returns True once the operator typed the confirmation word, False when cancelled."""

    BINDINGS = bindings("reason")  # escape cancels, as in the reason dialog
    INPUT_ID = "override-input"

    def __init__(self, gate_id: str, unmet: tuple[CriterionView, ...], *, blink: bool = True) -> None:
        super().__init__(blink=blink)
        self.gate_id = gate_id
        self.unmet = unmet

    def compose(self) -> ComposeResult:
        with Vertical(id="reason-box"):
            count = len(self.unmet)
            title = f"GO at the final gate {self.gate_id} over {count} unmet pass criteri{'on' if count == 1 else 'a'}:"
            yield Label(title, id="override-title")
            yield Static(render_criteria(self.unmet), id="override-criteria")
            note = Text("the run then ends ", style="")
            note.append("GO-OVERRIDE", style=themed("warn.b"))
            note.append(" (exit 4), never GO")
            yield Label(note, id="override-note")
            yield Input(placeholder=f"type {CONFIRM_WORD} and Enter to sign; Esc cancels", id="override-input")
            yield Label("", id="override-error")

    @on(Input.Submitted, "#override-input")
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value.strip().lower() != CONFIRM_WORD:
            self.query_one("#override-error", Label).update(f"type {CONFIRM_WORD} to sign the override")
            return
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
