"""The Sessions table: one row per session, a column sorted (▼/▲ in its title), marked rows flagged with ●."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

from widgets.session_rows import COLUMNS, cells
from widgets.theme import themed

STATE_STYLES = {
    "completed": "good",
    "running": "info.b",
    "waiting": "attn.b",
    "failed": "bad.b",
    "cancelled": "warn",
    "interrupted": "warn",
    "unreadable": "bad.b",
}
DECISION_STYLES = {"GO": "good.b", "GO-OVERRIDE": "warn.b", "NO-GO": "bad.b"}


class SessionsTable(DataTable[Any]):
    """Rows keyed by session id; ``show`` redraws and keeps the cursor on the same session.

    Each column is as wide as its widest cell (or its title), measured by ``show`` itself. Textual would measure
    auto-width columns only on the table's next idle, and lines drawn in a frame before that (a busy machine) stay
    in its line cache at the width of the titles ("202611…"), since measuring does not invalidate them.
    """

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True

    def show(self, rows: Sequence[dict[str, Any]], marked: Sequence[str], sort_column: int, descending: bool) -> None:
        current = self.current_id()
        shown_rows = [cells(row) for row in rows]
        self.clear(columns=True)
        self.add_column(Text("", style="bold"), key="mark", width=1)
        for i, col in enumerate(COLUMNS):
            arrow = (" ▼" if descending else " ▲") if i == sort_column else ""
            title = Text(col.title + arrow, style="bold")
            width = max([title.cell_len, *(cell_len(shown[i]) for shown in shown_rows)])
            self.add_column(title, key=str(i), width=width)
        for row, shown in zip(rows, shown_rows, strict=True):
            styled: list[Text] = [Text(c, no_wrap=True, overflow="ellipsis") for c in shown]
            styled[1].stylize(themed(STATE_STYLES.get(shown[1], "")))
            styled[2].stylize(themed(DECISION_STYLES.get(shown[2], "dim" if shown[2] == "-" else "")))
            mark = marked.index(row["id"]) if row["id"] in marked else None
            flag = Text("AB"[mark] if mark is not None else "", style=themed("warn.b reverse"))
            if mark is not None:
                styled[0].stylize(themed("warn.b"))
            self.add_row(flag, *styled, key=row["id"])
        if current is not None and current in {r["id"] for r in rows}:
            self.move_cursor(row=self.get_row_index(current), animate=False)

    def current_id(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # (no cursor yet)
            return None
        return str(key.value) if key.value is not None else None
