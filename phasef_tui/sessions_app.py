"""``phasef sessions --tui``: the Sessions and Compare screens; opening a session attaches to it, and quitting the
attached view comes back to the list."""

from __future__ import annotations

from pathlib import Path

from phasef_tui.app import PhasefApp, load_keys, run_attach
from phasef_tui.sessions_source import SessionsSource


def run_sessions_tui(root: Path, *, operator: str, config: Path | None = None) -> int:
    keymap, problems = load_keys(config if config is not None and config.exists() else None)
    while True:
        source = SessionsSource(root, operator=operator)
        app = PhasefApp(source, keymap=keymap, keymap_problems=problems)
        result = app.run()
        if source.chosen is None:
            return int(result or 0)
        run_attach(source.chosen, operator, None)
