"""Every key of the TUI with what it does and its binding id (the name to use in ``[tui.keys]``)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from phasef_tui.keys import SCREEN_NAMES, all_actions, bindings, display_key, effective_key
from phasef_tui.screens.dialog import DIALOGS_CSS
from widgets.theme import themed

SCOPE_TITLES = {"app": "Everywhere", "list": "Lists", "help": "Help", "reason": "Decision reason"} | SCREEN_NAMES


def render_help(keymap: Mapping[str, str]) -> Table:
    table = Table(box=None, expand=True, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("key", no_wrap=True, style=themed("info.b"), min_width=10)
    table.add_column("action", ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column("binding id", no_wrap=True, style="dim")
    scope_seen = None
    for scope, action in all_actions():
        if scope != scope_seen:
            scope_seen = scope
            table.add_row(Text(SCOPE_TITLES.get(scope, scope), style="bold underline"), "", "")
        key = effective_key(action, keymap)
        remapped = action.id in keymap
        table.add_row(
            Text(display_key(key), style=themed("warn.b") if remapped else themed("info.b")),
            action.description,
            action.id,
        )
    return table


class HelpScreen(ModalScreen[None]):
    CSS_PATH = DIALOGS_CSS
    BINDINGS = bindings("help")

    def __init__(self, keymap: Mapping[str, str]) -> None:
        super().__init__()
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = 'Keys · remap in config.toml [tui.keys] "id" = "key" · Esc closes'
            yield Static(render_help(self.keymap), id="help-table")

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()
