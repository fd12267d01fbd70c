"""Compare: the two sessions marked on the Sessions screen, paired per episode (the Stage E statistics)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from phasef_tui.keys import bindings
from phasef_tui.screens.base import SessionsListScreen
from phasef_tui.sessions_source import CHANGED_COMPARISON
from widgets.cross_table import render_body, render_head


class CompareScreen(SessionsListScreen):
    SCREEN_NAME = "Compare"
    FOCUS = "compare-scroll"
    DEFAULT_CSS = """
    #compare-head { height: auto; max-height: 4; background: $boost; }
    #compare-scroll { height: 1fr; }
    """
    BINDINGS = bindings("compare")

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        yield Static(id="compare-head")
        with VerticalScroll(id="compare-scroll"):
            yield Static(id="compare-body")
        yield from self.compose_footer()

    def refresh_view(self, changed: set[str]) -> None:
        if not ({"all", CHANGED_COMPARISON} & changed):
            return
        job = self.sessions.comparison
        head = self.query_one("#compare-head", Static)
        body = self.query_one("#compare-body", Static)
        if job is None:
            head.update(Text("nothing compared yet: mark two sessions on the Sessions screen (space), then c", "dim"))
            body.update("")
            return
        doc = job.doc if job.state == "done" else None
        head.update(render_head(doc, job.state, job.a, job.b))
        body.update(render_body(doc, job.state))

    def action_back(self) -> None:
        self.phasef.action_show_screen("sessions")

    def action_swap(self) -> None:
        job = self.sessions.comparison
        if job is not None:
            self.sessions.compare(job.b, job.a)
