"""What the one-line dialogs share (a reason, a time to jump to, the override word): the input gets the focus on
opening, its cursor blinking unless the app was started without blinking."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, TypeVar

from textual.screen import ModalScreen
from textual.widgets import Input

R = TypeVar("R")


DIALOGS_CSS = str(Path(__file__).parent.parent / "dialogs.tcss")
"""The dialogs' rules, read when the first dialog is shown (``phasef.tcss`` is the first screen's)."""


class InputDialog(ModalScreen[R]):
    CSS_PATH = DIALOGS_CSS
    INPUT_ID: ClassVar[str]
    """The id of the dialog's ``Input``."""

    def __init__(self, *, blink: bool = True) -> None:
        super().__init__()
        self.blink = blink

    def on_mount(self) -> None:
        field = self.query_one(f"#{self.INPUT_ID}", Input)
        field.cursor_blink = self.blink
        field.focus()
