"""Sessions: every session under the sessions folder, sortable; open one, or mark two (A, B) and compare them."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable

from phasef_tui.keys import bindings
from phasef_tui.screens.base import SessionsListScreen
from phasef_tui.sessions_source import CHANGED_SESSIONS
from widgets.session_rows import COLUMNS, DEFAULT_SORT, sort_rows
from widgets.sessions_table import SessionsTable
from widgets.status_line import StatusLine
from widgets.theme import themed


class SessionsScreen(SessionsListScreen):
    SCREEN_NAME = "Sessions"
    FOCUS = "sessions-table"
    DEFAULT_CSS = """
    #sessions-status { height: 1; background: $boost; }
    #sessions-table { height: 1fr; }
    """
    BINDINGS = bindings("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.sort_column = DEFAULT_SORT
        self.descending = True

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        yield StatusLine(id="sessions-status")
        yield SessionsTable(id="sessions-table")
        yield from self.compose_footer()

    def refresh_view(self, changed: set[str]) -> None:
        if not ({"all", CHANGED_SESSIONS} & changed):
            return
        src = self.sessions
        rows = sort_rows(src.rows(), self.sort_column, self.descending)
        self.query_one("#sessions-table", SessionsTable).show(rows, src.marked, self.sort_column, self.descending)
        self._status(len(rows))

    def _status(self, count: int) -> None:
        src = self.sessions
        text = Text(no_wrap=True, overflow="ellipsis")
        if not src.loaded:
            text.append(" reading the journals…", style="italic")
        else:
            text.append(f" {count} session{'s' if count != 1 else ''}", style="bold")
            order = "descending" if self.descending else "ascending"
            text.append(f" · by {COLUMNS[self.sort_column].title} {order}", style="dim")
            marks = " · ".join(f"{'AB'[i]}={m}" for i, m in enumerate(src.marked))
            text.append(f" · {marks}" if marks else " · space marks A and B", style=themed("warn") if marks else "dim")
        self.query_one("#sessions-status", StatusLine).show_text(text)

    def _current(self) -> str | None:
        return self.query_one("#sessions-table", SessionsTable).current_id()

    def _redraw(self) -> None:
        self.refresh_view({"all"})

    # -- actions --------------------------------------------------------------------------------------------------
    def action_sort(self) -> None:
        self.sort_column = (self.sort_column + 1) % len(COLUMNS)
        self._redraw()

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self._redraw()

    def action_reload(self) -> None:
        self.sessions.reload()

    def action_mark(self) -> None:
        current = self._current()
        if current is not None:
            self.sessions.toggle_mark(current)
            self._redraw()

    def action_compare(self) -> None:
        marked = self.sessions.marked
        if len(marked) != 2:
            self.notify("mark two sessions first (space marks A, then B)", timeout=4)
            return
        self.sessions.compare(marked[0], marked[1])
        self.phasef.action_show_screen("compare")

    def action_open_session(self) -> None:
        current = self._current()
        if current is None:
            return
        self.sessions.open(current)
        self.app.exit(0)

    def action_replay_session(self) -> None:
        current = self._current()
        if current is None:
            return
        self.sessions.open(current, replay=True)
        self.app.exit(0)

    @on(DataTable.RowSelected, "#sessions-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_session()
