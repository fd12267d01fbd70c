"""The ``phasef`` command line.

Start-up must stay light (``phasef --help`` imports neither mlx nor textual): sub-command modules only build their
argument parsers at import time and import what they need inside their handlers.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from phasef_tui import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phasef",
        description="Supervise the full-cycle improvement loop of an LLM agent: baseline, audit, data refresh, "
        "fine-tune, re-eval, comparison and a signed GO/NO-GO. Without a command: start (or find) the "
        "supervisor for ./config.toml and attach the TUI.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        if args.command is None:
            from phasef_tui.launcher import launch

            return launch()
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
