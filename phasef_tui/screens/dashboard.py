"""Dashboard: stages A-E with their steps, pending gates, headline metrics, and the log tail of a step."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll

from phasef_tui.keys import bindings
from phasef_tui.screens.step_actions import StepActions
from widgets.headline import Headline
from widgets.log_tail import LogTail
from widgets.session_view import SessionView
from widgets.stage_board import StageBoard


class DashboardScreen(StepActions):
    SCREEN_NAME = "Dashboard"
    FOCUS = "board-scroll"
    BINDINGS = bindings("dashboard")

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None
        self.follow_current = True

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        with Horizontal(id="dash-top"):
            with VerticalScroll(id="board-scroll"):
                yield StageBoard(id="board")
            yield Headline(id="headline")
        yield LogTail(id="log")
        yield from self.compose_footer()

    def _view(self) -> SessionView | None:
        return self.source.session_view(self.phasef.clock())

    def _step_keys(self, view: SessionView) -> list[str]:
        return [step.key for stage in view.stages for step in stage.steps]

    def refresh_view(self, changed: set[str]) -> None:
        view = self._view()
        if view is None:
            return
        if self.follow_current or self.selected is None:
            self.selected = view.current_step
        now = self.source.view_time(self.phasef.clock())
        self.query_one("#board", StageBoard).show(view.stages, self.selected, now)
        self.query_one("#headline", Headline).show(view.state, view.final_decision, view.gates, view.metrics)
        step = view.step(self.selected) if self.selected else None
        title = None
        if step is not None:
            title = f"{step.key} · try {step.attempts}" if step.attempts > 1 else step.key
        self.query_one("#log", LogTail).show_blocks(title, self.source.log_tails(self.selected))
        if "all" in changed or "session" in changed:
            self.draw_tabs()

    def _move(self, delta: int) -> None:
        view = self._view()
        if view is None:
            return
        keys = self._step_keys(view)
        if not keys:
            return
        position = keys.index(self.selected) if self.selected in keys else 0
        self.selected = keys[max(0, min(len(keys) - 1, position + delta))]
        self.follow_current = False
        self.refresh_view(set())

    def action_next_step(self) -> None:
        self._move(1)

    def action_prev_step(self) -> None:
        self._move(-1)

    def action_current_step(self) -> None:
        self.follow_current = True
        self.refresh_view(set())

    def action_open_gate(self) -> None:
        view = self._view()
        if view is None:
            return
        waiting = view.pending_gates
        if not waiting:
            self.notify("no gate is waiting", timeout=3)
            return
        self.phasef.open_gate(waiting[0].id)
