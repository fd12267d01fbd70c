"""Shared helpers for sub-commands: locating the config, the project and sessions (light imports only)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_GO = 0, 1, 2, 3
EXIT_GO_OVERRIDE = 4  # the same value as pipeline.report.criteria.EXIT_GO_OVERRIDE (kept import-light)
EXIT_INTERRUPTED = 130
"""Exit codes of every command (listed by ``phasef --help``)."""


def say(args: argparse.Namespace, message: str) -> None:
    """An informational line on stdout, unless ``-q`` (errors go to stderr whatever the verbosity)."""
    if not getattr(args, "quiet", False):
        print(message)


def help_when_bare(parser: argparse.ArgumentParser) -> None:
    """A command of sub-commands run without one prints its help to stderr and exits 2."""

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    parser.set_defaults(func=usage)


OPERATOR_HELP = "operator name (default: $PHASEF_OPERATOR or $USER)"


def add_operator_arg(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--as NAME``: the operator who signs or asks (``default_operator()`` when not given)."""
    p.add_argument("--as", dest="operator", default=None, help=help)


def add_json_arg(p: argparse.ArgumentParser, what: str = "the result") -> None:
    """Declare that a command prints data and can print it as JSON (see ``phasef_tui.cli``)."""
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON (errors too)")


def add_config_arg(p: argparse.ArgumentParser) -> None:
    """The one way every command names its config file: ``-c/--config FILE``, else $PHASEF_CONFIG, else
    ./config.toml."""
    p.add_argument(
        "--config", "-c", default=None, metavar="FILE", help="config file (default: $PHASEF_CONFIG or ./config.toml)"
    )


def config_path(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "config", None) or os.environ.get("PHASEF_CONFIG") or "config.toml").resolve()


def load(args: argparse.Namespace) -> tuple[Any, Path] | None:
    """Load and validate the config; print every issue and return None on error (caller exits 2)."""
    from pipeline.config import ConfigError, load_config

    path = config_path(args)
    try:
        return load_config(path), path
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        return None


def sessions_root_for(args: argparse.Namespace) -> Path:
    """The sessions folder: ``--sessions``, else the config's ``project.sessions_dir``, else ./sessions."""
    explicit = getattr(args, "sessions", None)
    if explicit:
        return Path(explicit).resolve()
    path = config_path(args)
    if path.exists():
        from pipeline.config_section import ConfigError, read_sessions_dir

        try:
            sessions_dir = read_sessions_dir(path)
        except ConfigError:
            pass
        else:
            sub = Path(sessions_dir).expanduser()
            return sub if sub.is_absolute() else path.parent / sub
    return Path("sessions").resolve()


def add_session_lookup(p: argparse.ArgumentParser) -> None:
    add_config_arg(p)
    p.add_argument("--sessions", default=None, help="sessions folder (default: from the config, or ./sessions)")


def resolve_session(args: argparse.Namespace, session: str | None) -> Path | None:
    from pipeline.session_paths import find_session

    try:  # (the sessions root, which reads the config, only when the session is not a folder given by its path)
        return find_session(lambda: sessions_root_for(args), session).resolve()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def on_session(handler: Callable[[argparse.Namespace, Path], int]) -> Callable[[argparse.Namespace], int]:
    """A command on one session: ``args.session`` is looked up first (not found: the error is said, exit 2)."""

    def run(args: argparse.Namespace) -> int:
        session_dir = resolve_session(args, args.session)
        return EXIT_USAGE if session_dir is None else handler(args, session_dir)

    return run


def default_operator() -> str:
    return os.environ.get("PHASEF_OPERATOR") or os.environ.get("USER") or "operator"


def is_stdout(path: Path | None) -> bool:
    """``-o -``: the output goes to standard output."""
    return path is not None and str(path) == "-"


def output_name(path: Path) -> str:
    return "standard output" if is_stdout(path) else str(path)


@contextlib.contextmanager
def open_output(path: Path) -> Iterator[IO[bytes]]:
    """Where ``-o PATH`` writes: standard output for ``-``; any other path is written atomically (a temporary file
    beside it, renamed into place only on success). A path that exists and is not a regular file (``/dev/stdout``,
    a FIFO) is refused with a hint to use ``-``."""
    if is_stdout(path):
        out = sys.stdout.buffer
        yield out
        out.flush()
        return
    from pipeline.fsio import NotARegularFile, atomic_open

    with contextlib.ExitStack() as stack:
        try:
            fh = stack.enter_context(atomic_open(path, "wb"))
        except NotARegularFile as exc:
            raise NotARegularFile(f"{exc}; -o - writes to standard output") from None
        yield fh
