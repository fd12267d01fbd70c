"""``phasef`` with no command: attach to the running supervisor of ./config.toml, or start one first."""

from __future__ import annotations

import argparse
import sys

from phasef_tui.commands._common import EXIT_USAGE, default_operator, load


def launch() -> int:
    from phasef_tui.commands.run import attach, start_detached
    from pipeline.journal import is_locked
    from pipeline.session import new_session_id, sessions_root
    from pipeline.session_paths import list_sessions

    args = argparse.Namespace(config=None)
    loaded = load(args)
    if loaded is None:
        print("error: phasef needs a config.toml here (or --config with 'phasef run')", file=sys.stderr)
        return EXIT_USAGE
    cfg, path = loaded
    root = sessions_root(cfg, path.parent)
    running = [s for s in list_sessions(root) if is_locked(s)]
    if running:
        session_dir = running[0]
        print(f"attaching to running session {session_dir.name}")
    else:
        session_dir = (root / new_session_id()).resolve()
        if start_detached(path, session_dir, None) is None:
            return 1
        print(f"started supervisor for session {session_dir.name}")
    return attach(session_dir, default_operator())
