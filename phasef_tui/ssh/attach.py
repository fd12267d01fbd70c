"""What an SSH session runs: the TUI attached to the served session, as the connection's operator.

    python -m phasef_tui.ssh.attach SESSION_DIR OPERATOR

The same ``attach`` as ``phasef attach SESSION_DIR --as OPERATOR``, minus the command line's parser and its logging
set-up: the SSH server built these two arguments itself (the session folder found, the operator named by the
authorized_keys entry), so there is nothing to parse. A session forked by the session server then runs none of that
code (~0.3 MB and ~0.15 MB of pages copied per session: CPython writes the reference counts of the objects a run
touches, and each page written is the session's own copy).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from phasef_tui.commands._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE

USAGE = "usage: python -m phasef_tui.ssh.attach SESSION_DIR OPERATOR"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or not all(args):
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    from pipeline.session_paths import is_session

    session_dir, operator = Path(args[0]), args[1]
    if not is_session(session_dir):
        print(f"error: no session at {session_dir} (no journal there)", file=sys.stderr)
        return EXIT_USAGE
    from phasef_tui.cli import startup_cache_for
    from phasef_tui.commands.run import attach

    # No logging set-up: a warning goes to Python's last-resort handler, which writes to ``sys.stderr`` as it is
    # when the warning comes, so while the TUI runs Textual's capture takes it instead of it being written over the
    # screen (a handler set up now would hold the terminal itself); the level is the CLI's default, WARNING.
    with startup_cache_for("attach"):
        try:
            return attach(session_dir.resolve(), operator)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
