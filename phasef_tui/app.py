"""The phasef TUI: one App over a ``DataSource``, redrawing from it at a bounded frame rate.

The same screens serve a trace file alone (``phasef trace view``) and a live session (``phasef attach``): the source
decides which screens exist. A timer polls the source ``FRAME_RATE`` times a second and tells the active screen what
changed, so a flood of trace records or journal events costs one redraw per frame, never one per event; while
nothing changes the timer slows down (a live session) or stops (a settled one): ``frame_pace``.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from importlib import import_module
from pathlib import Path
from typing import Any

from textual import events
from textual.app import App, ScreenStackError
from textual.driver import Driver

from phasef_tui import startup_cache
from phasef_tui.data_source import CHANGED_SESSION, DataSource
from phasef_tui.frame_pace import FramePace
from phasef_tui.keys import APP_KEYS, SCREEN_NAMES, bindings, display_key, effective_key
from phasef_tui.log_toasts import ToastHandler, print_kept, show_warnings
from phasef_tui.palette import PhasefCommands
from phasef_tui.screens.base import PhasefScreen
from phasef_tui.stylesheet import ParsedOnceStylesheet, stylesheet_for
from pipeline.problems import Problem

FRAME_RATE = 20.0
"""Redraws per second at most (the data is pulled, coalesced, once a frame)."""
CLOCK_PERIOD_S = 1.0
"""How often an idle dashboard redraws its running clocks (a frame costs CPU per attached operator)."""
GC_THRESHOLDS = (10_000, 20, 100)
"""Fewer, cheaper garbage collections: with Python's defaults a flood of records triggers full collections of the
whole heap several times a second, each a pause of up to ~100 ms (measured) that keys would wait behind."""
SWITCH_INTERVAL_S = 0.001
"""How long a busy background thread (the indexer summarizing a big file) may keep the interpreter before the UI
thread gets it back; Python's default, 5 ms, is paid again at every read the UI makes, and keys would feel it."""

TRACE_SCREENS = ("traces", "chains", "report")
SESSION_SCREENS = ("dashboard", "traces", "chains", "audit", "report")
SCREEN_CLASSES = {
    "dashboard": ("dashboard", "DashboardScreen"),
    "traces": ("traces", "TracesScreen"),
    "chains": ("chains", "ChainsScreen"),
    "audit": ("audit", "AuditScreen"),
    "report": ("report", "ReportScreen"),
    "sessions": ("sessions", "SessionsScreen"),
    "compare": ("compare", "CompareScreen"),
}
"""Each mode's screen: its module under ``phasef_tui.screens`` and its class."""
SCREEN_CSS_DIR = Path(__file__).parent
"""``<mode>.tcss`` here: the rules of one main screen only (``phasef.tcss`` holds what the Traces screen and every
screen share), so the trace viewer's first frame does not wait for the other screens' CSS to be parsed."""


class PhasefApp(App[int]):
    CSS_PATH = "phasef.tcss"
    TITLE = "phasef"
    BINDINGS = bindings("app")
    COMMANDS = App.COMMANDS | {PhasefCommands}
    """Textual's own commands (theme, keys, screenshot, maximize, quit) next to phasef's."""
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        source: DataSource,
        *,
        keymap: Mapping[str, str] | None = None,
        keymap_problems: Sequence[Problem] = (),
        frame_rate: float = FRAME_RATE,
        clock: Callable[[], float] = time.time,
        blink: bool = True,
        initial: str | None = None,
        theme: str | None = None,
        theme_source: str = "config.toml [tui] theme",
    ) -> None:
        screens: tuple[str, ...] | None = getattr(source, "screens", None)
        self.available_screens = screens or (SESSION_SCREENS if source.has_session else TRACE_SCREENS)
        self.initial = initial or self.available_screens[0]
        # the app starts in the first screen's mode: Textual builds that screen at once, instead of a default
        # screen first and then a switch to the mode (which applied the CSS to every widget of it twice more)
        self.DEFAULT_MODE = self.initial  # type: ignore[misc]
        super().__init__()
        for name in self.available_screens:
            self.add_mode(name, partial(self._make_screen, name))
        variables = self.get_css_variables()  # (no source read in yet; an SSH session has no start-up cache)
        cache = startup_cache.active_cache
        self.stylesheet = stylesheet_for(cache, variables) if cache else ParsedOnceStylesheet(variables=variables)
        self.requested_theme = theme
        self.theme_source = theme_source
        self.source = source
        self.keymap: dict[str, str] = dict(keymap or {})
        self.keymap_problems = list(keymap_problems)
        self.clock = clock
        self.blink = blink
        self.screen_objects: dict[str, PhasefScreen] = {}
        self.frames = 0
        self._start_notes: list[str] = []
        self._gc_before: tuple[int, int, int] | None = None
        self._clock_drawn = 0.0
        self._switch_before = sys.getswitchinterval()
        self.pace = FramePace(self.set_interval, self._frame, frame_rate)
        """The frames' rate: full, slowed on a quiet live session, paused on a settled one (``frame_pace``)."""
        self._loop_for_wake: asyncio.AbstractEventLoop | None = None
        self._toasts: ToastHandler | None = None
        """Warnings logged while the app runs, shown and kept (``log_toasts``)."""
        self.collect_after_first_frame = False
        """Turn the garbage collector on once the first frame is drawn (the caller turned it off for the start-up:
        ``trace_view.run_trace_view``)."""

    def get_driver_class(self) -> type[Driver]:
        """Textual's choice, with its Linux driver replaced by one that a ``SIGCONT`` from outside does not start twice
        (``phasef_tui.driver``)."""
        from phasef_tui.driver import driver_for

        return driver_for(super().get_driver_class())

    def notify_on_start(self, message: str) -> None:
        """A warning to show once the app runs (problems found while preparing its data)."""
        self._start_notes.append(message)

    # -- screens -----------------------------------------------------------------------------------------------------
    def _make_screen(self, name: str) -> PhasefScreen:
        """The screen of a mode, its module imported only now (the first screen does not wait for the others)."""
        module, class_name = SCREEN_CLASSES[name]
        cls: type[PhasefScreen] = getattr(import_module(f"phasef_tui.screens.{module}"), class_name)
        screen = cls()
        # the width class (``-wide``/``-narrow``) set now: set by the first resize instead, it restyles every widget
        width = self.size.width
        for breakpoint, class_name in sorted(self.HORIZONTAL_BREAKPOINTS or [], reverse=True):
            if width >= breakpoint:
                screen.add_class(class_name, update=False)
                break
        css = SCREEN_CSS_DIR / f"{name}.tcss"
        if css.exists():  # its own rules, parsed when the screen is first shown (Textual reads a screen's css_path)
            screen.css_path = [*screen.css_path, css]
        self.screen_objects[name] = screen
        return screen

    def _before_first_screen(self) -> None:
        """The theme and the widgets' palette, set before the first screen is built (Textual builds it when the
        app is composed, before the app's ``on_mount``): its widgets are filled with colours as they are composed,
        and a theme set after their CSS was applied would parse and apply it all again."""
        from phasef_tui.theming import apply_palette, check_theme

        if self.requested_theme:
            problem = check_theme(self, self.requested_theme, self.theme_source)
            if problem is None:
                self.theme = self.requested_theme
            else:
                self._start_notes.append(problem)
        apply_palette(self)
        if self.keymap:
            self.set_keymap(self.keymap)

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.app_resume_signal.subscribe(self, self._resumed)
        self._switch_before = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.call_after_refresh(self.source.start)  # the first screen (from the first KB) before any scanning
        self.pace.start()
        self._loop_for_wake = asyncio.get_running_loop()
        self.source.on_change = self._wake_from_thread
        self._toasts = show_warnings(self._toast, self._loop_for_wake)
        self.call_after_refresh(self._settle_heap)
        for keymap_problem in self.keymap_problems:
            self.notify(str(keymap_problem), title="keymap", severity="warning", timeout=10)
        for note in self._start_notes:
            self.notify(note, severity="warning", timeout=10)

    def _resumed(self, _app: object) -> None:
        """Back from a suspension (Ctrl+Z, or a terminal changed while the process stood): the terminal's alternate
        screen starts blank, so the whole screen is drawn again."""
        self.screen.refresh()
        self.pace.wake()

    def _theme_changed(self, _theme: object) -> None:
        """Another theme (from the palette, or set by code): the widgets' Rich text takes its colours, redrawn."""
        from phasef_tui.theming import apply_palette

        apply_palette(self)
        for screen in self.screen_objects.values():
            if screen.view_ready:  # (a screen still mounting draws itself with the new palette when ready)
                screen.refresh_view({"all"})
                screen.refresh(layout=False)

    def _settle_heap(self) -> None:
        """Once the app is built, move what exists to the collector's permanent generation (it lives as long as
        the app) and collect less often, so pauses stay short while records stream in. (The trace viewer starts
        with the collector off, ``collect_after_first_frame``: it is turned on here, after the first frame.)"""
        gc.collect()
        gc.freeze()
        startup_cache.save()  # (what the start-up compiled, for the next start: see phasef_tui.startup_cache)
        self._gc_before = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        if self.collect_after_first_frame:
            gc.enable()

    def _toast(self, text: str, title: str, severity: str) -> None:
        self.notify(text, title=title, severity=severity, timeout=10)  # type: ignore[arg-type]

    def run(self, *args: Any, **kwargs: Any) -> int | None:
        """Textual's ``run``; then what was logged while it ran is printed (``log_toasts``: on screen it was a
        notification; the terminal's stderr was the screen)."""
        try:
            return super().run(*args, **kwargs)
        finally:
            print_kept(self._toasts, sys.stderr)

    def on_unmount(self) -> None:
        if self._toasts is not None:
            self._toasts.unbind()
        if self._gc_before is not None:  # leave the process as it was (an app may run inside a larger program)
            gc.unfreeze()
            gc.set_threshold(*self._gc_before)
        sys.setswitchinterval(self._switch_before)
        self.source.on_change = None
        self.source.stop()

    def _frame(self) -> None:
        """One frame: ask the source what changed and let the visible screen redraw those parts."""
        if not self.is_running:
            return  # shutting down: the screens' widgets are being removed
        try:
            screen = self.screen
        except ScreenStackError:
            return  # between modes, or closing
        if not isinstance(screen, PhasefScreen) or not screen.view_ready:
            return  # a dialog or a screen still mounting: keep the changes for the next main screen frame
        self.frames += 1
        changed = self.source.poll()
        if CHANGED_SESSION in changed:
            screen.draw_tabs()
        now = time.monotonic()
        clocks_due = screen.SCREEN_NAME == "Dashboard" and now - self._clock_drawn >= CLOCK_PERIOD_S
        clocks_due = clocks_due and self.source.clocks_running
        if changed or clocks_due:  # the dashboard's clocks tick once a second; nothing else redraws when idle
            self._clock_drawn = now
            screen.refresh_view(changed)
        self.pace.after_frame(bool(changed) or self.source.playing, self.source.settled)

    def _wake_from_thread(self) -> None:
        """Frames at the full rate again, asked from a reader thread, without waiting for it (a thread being joined
        at exit must not block). Nothing to do while they run at the full rate: the next frame reads the change."""
        loop = self._loop_for_wake
        if loop is None or not self.pace.idle:
            return
        try:
            loop.call_soon_threadsafe(self.pace.wake)
        except RuntimeError:
            pass  # the loop is closed: the app has ended

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Compose):
            self._before_first_screen()
        elif self.pace.idle and isinstance(event, events.InputEvent | events.Resize | events.ScreenResume):
            self.pace.wake()
        await super().on_event(event)

    def tab_list(self) -> tuple[tuple[str, str], ...]:
        out = []
        for name in self.available_screens:
            action = next(a for a in APP_KEYS if a.id == f"app.{name}")
            out.append((display_key(effective_key(action, self.keymap)).split(" / ")[0], SCREEN_NAMES[name]))
        return tuple(out)

    def attention(self) -> str:
        """A short note for the tab line when the operator is needed (a gate waits)."""
        view = self.source.session_view(self.clock()) if self.source.has_session else None
        if view is None:
            return ""
        waiting = view.pending_gates
        if waiting:
            return f"◆ {len(waiting)} gate{'s' if len(waiting) > 1 else ''} waiting"
        if view.final_decision:
            return f"final {view.final_decision}"
        return ""

    def action_show_screen(self, name: str) -> None:
        if name not in self.available_screens:
            self.notify(f"no {SCREEN_NAMES.get(name, name)} screen without a session", timeout=3)
            return
        self.switch_mode(name)

    def action_replay(self, op: str) -> None:
        """The replay keys (``phasef replay``): move through the journal; every screen follows."""
        from phasef_tui.replay_controls import replay_action

        replay_action(self, op)

    def action_help(self) -> None:
        """The help screen is built once and kept (installed): later opens only redraw it."""
        from phasef_tui.screens.help import HelpScreen

        if not self.is_screen_installed("help"):
            self.install_screen(HelpScreen(self.keymap), name="help")
        self.push_screen("help")

    def open_chain(self, chain: int, position: int) -> None:
        """Show a recovery chain at a tick (from the Traces screen)."""
        self.switch_mode("chains")
        from phasef_tui.screens import ChainsScreen

        screen = self.screen_objects.get("chains")
        if isinstance(screen, ChainsScreen):
            screen.select(chain, position)

    def open_trace_line(self, line: int) -> None:
        """Show a trace line in the stream (from the Chains screen)."""
        self.switch_mode("traces")
        from phasef_tui.screens import TracesScreen

        screen = self.screen_objects.get("traces")
        if isinstance(screen, TracesScreen):
            screen.show_line(line)

    def open_gate(self, gate_id: str) -> None:
        self.switch_mode("audit")
        from phasef_tui.screens import AuditScreen

        screen = self.screen_objects.get("audit")
        if isinstance(screen, AuditScreen):
            screen.select_gate(gate_id)


def load_keys(config: Path | None) -> tuple[dict[str, str], list[Problem]]:
    """The operator's ``[tui.keys]`` from ``config`` (missing file: no remapping)."""
    if config is None:
        return {}, []
    from phasef_tui.keys import keymap_from_config

    return keymap_from_config(config)


def load_tui_settings(config: Path | None) -> dict[str, Any]:
    """Keyword arguments for ``PhasefApp`` from ``config``'s ``[tui]`` table: keys and theme, with their problems."""
    from phasef_tui.keys import keymap_from_config, read_tui
    from phasef_tui.theming import theme_from_config

    keymap: dict[str, str] = {}
    problems: list[Problem] = []
    if config is None:
        theme, theme_problems, where = theme_from_config(None)
    else:
        read = read_tui(config)  # (once, for both)
        keymap, problems = keymap_from_config(config, read)
        theme, theme_problems, where = theme_from_config(config, read)
    return {"keymap": keymap, "keymap_problems": problems + theme_problems, "theme": theme, "theme_source": where}


def run_attach(session_dir: Path, operator: str, control_socket: Path | None) -> int:
    """Attach the TUI to a session: replay and tail its journal, sign decisions over the control socket. The view
    follows the newest event; the replay keys pause it and scrub back (``F`` returns to live)."""
    from phasef_tui import attach_ahead
    from phasef_tui.replay_source import ReplaySource
    from phasef_tui.session_source import session_config_path

    session_dir = Path(session_dir)
    if not session_dir.is_dir():
        print(f"phasef attach: {session_dir}: no such session folder")
        return 2
    ahead = attach_ahead.take(session_dir, operator, control_socket)  # (an SSH session: read by the session server)
    if ahead is not None:
        source, settings = ahead
    else:
        try:
            source = ReplaySource(
                session_dir, operator=operator, control_socket=control_socket, follow=True, attached=True
            )
        except FileNotFoundError as exc:
            print(f"phasef attach: {exc}")
            return 2
        settings = load_tui_settings(session_config_path(session_dir))
    app = PhasefApp(source, **settings)
    result = app.run()
    return int(result or 0)
