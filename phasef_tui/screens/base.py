"""What every main screen shares: the tab line on top, the footer, and a redraw hook called from the frame loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.screen import Screen

from phasef_tui.keys import APP_KEYS, SCREEN_KEYS, display_key, effective_key
from widgets.key_hints import KeyHints
from widgets.screen_tabs import ScreenTabs

if TYPE_CHECKING:
    from phasef_tui.app import PhasefApp
    from phasef_tui.data_source import DataSource
    from phasef_tui.sessions_source import SessionsSource


class PhasefScreen(Screen[None]):
    """A main screen (one mode of the app). Subclasses compose their body and implement ``refresh_view``."""

    SCREEN_NAME: ClassVar[str] = ""
    FOCUS: ClassVar[str] = ""
    """The id of the widget that has the focus when the screen opens (none when empty)."""
    view_ready = False
    """True once the screen's widgets are mounted: frames before that are skipped, not drawn into nothing."""

    @property
    def phasef(self) -> PhasefApp:
        from phasef_tui.app import PhasefApp

        app = self.app
        assert isinstance(app, PhasefApp)
        return app

    @property
    def source(self) -> DataSource:
        return self.phasef.source

    def compose_tabs(self) -> ComposeResult:
        tabs = ScreenTabs(id="tabs")
        # filled before it is mounted, so the first frame has it (an update after mounting shows a frame later)
        tabs.show(self.phasef.tab_list(), self.SCREEN_NAME, self.source.title, self.phasef.attention())
        yield tabs

    def compose_footer(self) -> ComposeResult:
        if getattr(self.source, "replaying", False):  # (phasef replay: the timeline on every screen)
            from widgets.timeline_bar import TimelineBar

            yield TimelineBar(id="timeline")
        keys = KeyHints(id="keys")
        keys.show(self.key_hints())
        yield keys

    def draw_tabs(self) -> None:
        self.query_one("#tabs", ScreenTabs).show(
            self.phasef.tab_list(), self.SCREEN_NAME, self.source.title, self.phasef.attention()
        )
        info = getattr(self.source, "timeline_info", None)
        if info is not None:
            from widgets.timeline_bar import TimelineBar

            bar = self.query_one("#timeline", TimelineBar)
            bar.display = bool(getattr(self.source, "bar_shown", True))  # (attach: only once scrubbed back)
            bar.show(info())

    def refresh_view(self, changed: set[str]) -> None:
        """Redraw from the data source; ``changed`` names what changed since the last frame."""

    def key_hints(self) -> list[tuple[str, str]]:
        """The shown keys of this screen, then of the app, with the operator's keymap applied."""
        keymap = self.phasef.keymap
        actions = [*SCREEN_KEYS.get(self.SCREEN_NAME.lower(), ()), *APP_KEYS]
        return [(display_key(effective_key(a, keymap)).split(" / ")[0], a.description) for a in actions if a.show]

    def _compositor_refresh(self) -> None:
        """Not while the app holds its updates back (``batch_update``: its start-up, Compose to Mount): Textual
        would render the whole screen and then drop it unshown. The screen stays dirty and is drawn once updates go."""
        if self.app._batch_count:
            self._repaint_required = True
            return
        super()._compositor_refresh()

    def on_mount(self) -> None:
        if self.FOCUS:
            self.query_one(f"#{self.FOCUS}").focus()
        self.view_ready = True  # (Textual calls this after the subclass's own on_mount)
        self.query_one("#keys", KeyHints).show(self.key_hints())
        self.draw_tabs()
        self.refresh_view({"all"})

    def on_screen_resume(self) -> None:
        if self.view_ready:  # (the first resume may come before the mount; on_mount draws then)
            self.draw_tabs()
            self.refresh_view({"all"})


class SessionsListScreen(PhasefScreen):
    """A screen of the sessions browser (``phasef sessions``): its source lists the sessions folder."""

    @property
    def sessions(self) -> SessionsSource:
        from phasef_tui.sessions_source import SessionsSource

        source = self.source
        assert isinstance(source, SessionsSource)
        return source
