"""``phasef sessions --tui``: the Sessions and Compare screens; opening a session attaches to it (or replays it), and
quitting that view comes back to the list."""

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
        if source.replay:
            from phasef_tui.replay_source import ReplaySource
            from phasef_tui.session_source import session_config_path

            replay_keys, _ = load_keys(session_config_path(source.chosen))
            PhasefApp(ReplaySource(source.chosen, operator=operator), keymap=replay_keys).run()
        else:
            run_attach(source.chosen, operator, None)
