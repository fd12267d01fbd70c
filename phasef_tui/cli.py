"""The ``phasef`` command line.

Start-up must stay light (``phasef --help`` imports neither mlx nor textual): sub-command modules only build their
argument parsers at import time and import what they need inside their handlers.

Global flags work for every command, before or after its name (``phasef -q config check`` and ``phasef config check
-q`` alike), including commands added later: they are spread over the whole parser tree once it is built.

- ``-v``/``-vv`` more detail, ``-q`` only errors: the level of the ``logging`` root and ``args.verbose`` /
  ``args.quiet`` for handlers (``phasef_tui.commands._common.say`` prints informational lines unless quiet).
- ``--json``: a command that prints data prints one JSON document on stdout; a command supports it by defining its
  own ``--json`` flag. Under ``--json`` an error is JSON too: ``{"ok": false, "exit_code": N, "error": "...",
  "messages": [...]}`` on stdout (usage errors included), whatever the command wrote to stderr gathered in it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import logging
import pkgutil
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from phasef_tui import commands
from phasef_tui.commands._common import (
    EXIT_FAILED,
    EXIT_GO_OVERRIDE,
    EXIT_INTERRUPTED,
    EXIT_NO_GO,
    EXIT_OK,
    EXIT_USAGE,
)

EXIT_CODES = (
    (EXIT_OK, "success (a run: completed with GO, or no gate reached)"),
    (EXIT_FAILED, "failed: a step or check failed, a request was refused, a run was cancelled"),
    (EXIT_USAGE, "usage or config error (bad flag, invalid config.toml, unknown session)"),
    (EXIT_NO_GO, "a run completed with a NO-GO decision"),
    (EXIT_GO_OVERRIDE, "a run completed GO-OVERRIDE (signed GO over an unmet pass criterion)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)
JSON_HELP = "print data as one JSON document; errors become JSON too"


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("phasef")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``, with the version looked up only when asked (``importlib.metadata`` is ~20 ms of imports that
    every other command, the viewer's start among them, would pay)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **_: Any) -> None:
        shown = "show the version and exit"
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=shown)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        print(f"phasef {version()}")
        parser.exit()


class JsonMode:
    """Whether this invocation asked for ``--json`` (known before parsing, so that usage errors can honour it)."""

    on = False


class PhasefArgumentParser(argparse.ArgumentParser):
    """argparse, with usage errors as JSON under ``--json`` (sub-parsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        if JsonMode.on:
            emit_json_error(EXIT_USAGE, [f"{self.prog}: {message}"])
            sys.exit(EXIT_USAGE)
        super().error(message)


def emit_json_error(code: int, messages: list[str]) -> None:
    lines = [m for m in (line.strip() for line in messages) if m]
    first = lines[0] if lines else ("interrupted" if code == EXIT_INTERRUPTED else f"failed with exit code {code}")
    doc = {"ok": False, "exit_code": code, "error": first.removeprefix("error: "), "messages": lines}
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def _epilog() -> str:
    lines = ["exit codes:"] + [f"  {code:<4}{text}" for code, text in EXIT_CODES]
    lines += [
        "",
        "global flags (before or after the command): -v/-vv more detail, -q only errors, --json machine output",
        "environment: PHASEF_CONFIG (the config file), PHASEF_OPERATOR (your name at gates), NO_COLOR",
        "shell completion: phasef completion bash|zsh|fish",
    ]
    return "\n".join(lines)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command``, only that command's when the module of the same name registers it (the
    other command modules are then not imported and their parsers not built: ~30 ms less at every start)."""
    if command is not None and command.isidentifier() and not command.startswith("_"):
        try:
            spec = importlib.util.find_spec(f"{commands.__name__}.{command}")
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            parser = _parser_with([command])
            if command in subparsers_of(parser):
                return parser
    names = sorted(info.name for info in pkgutil.iter_modules(commands.__path__) if not info.name.startswith("_"))
    return _parser_with(names)


def _parser_with(modules: list[str]) -> argparse.ArgumentParser:
    parser = PhasefArgumentParser(
        prog="phasef",
        description="Supervise the full-cycle improvement loop of an LLM agent: baseline, audit, data refresh, "
        "fine-tune, re-eval, comparison and a signed GO/NO-GO. Without a command: start (or find) the "
        "supervisor for ./config.toml and attach the TUI.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("-v", "--verbose", dest="_g_verbose", action="count", default=0, help="more detail (-vv)")
    parser.add_argument("-q", "--quiet", dest="_g_quiet", action="store_true", help="print only errors")
    parser.add_argument("--json", dest="_g_json", action="store_true", help=JSON_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        module = importlib.import_module(f"{commands.__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    for child in subparsers_of(parser).values():
        spread_global_flags(child)
    return parser


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-commands of ``parser`` by name (aliases left out)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: dict[int, str] = {}
            for name, child in action.choices.items():
                seen.setdefault(id(child), name)
            return {name: action.choices[name] for name in seen.values()}
    return {}


def _has_option(parser: argparse.ArgumentParser, option: str) -> bool:
    return option in parser._option_string_actions


def spread_global_flags(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and its descendants ``-v``/``-q``/``--json`` (defaults suppressed, so a flag given before the
    command is not reset by the sub-command's default). A leaf command without its own ``--json`` is marked as not
    printing data, and ``--json`` is refused for it."""
    if not _has_option(parser, "-v") and not _has_option(parser, "--verbose"):
        parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more detail (-vv)")
    if not _has_option(parser, "-q") and not _has_option(parser, "--quiet"):
        parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors")
    children = subparsers_of(parser)
    if not _has_option(parser, "--json"):
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if not children:
            parser.set_defaults(_no_json=True)
    for child in children.values():
        spread_global_flags(child)


def merge_global_flags(args: argparse.Namespace) -> argparse.Namespace:
    args.verbose = int(getattr(args, "_g_verbose", 0)) + int(getattr(args, "verbose", 0) or 0)
    args.quiet = bool(getattr(args, "_g_quiet", False) or getattr(args, "quiet", False))
    args.json = bool(getattr(args, "_g_json", False) or getattr(args, "json", False))
    return args


class CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to ``sys.stderr`` as it is when a record comes, not as it was when logging was set up.

    While a TUI runs, ``sys.stderr`` is Textual's capture and the terminal is the screen: a handler holding the
    terminal's stderr would write a library's warning over the screen (the app shows it as a notification instead,
    ``phasef_tui.log_toasts``)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass  # (StreamHandler.__init__ and setStream set it: the stream is always the current sys.stderr)


def configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    from phasef_tui.log_toasts import LINE_FORMAT

    handler = CurrentStderr()
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger().setLevel(level)


class _Tee(io.TextIOBase):
    """A stream under ``--json``: passed on as it is written (progress stays visible) and kept."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.kept = io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return int(self.target.write(text))

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return bool(self.target.isatty())

    def fileno(self) -> int:
        return int(self.target.fileno())


@contextlib.contextmanager
def _gathered(on: bool) -> Iterator[tuple[_Tee, _Tee] | None]:
    """stdout and stderr passed through and kept (to know whether the command printed its own JSON)."""
    if not on:
        yield None
        return
    out, err = _Tee(sys.stdout), _Tee(sys.stderr)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    JsonMode.on = "--json" in argv[: argv.index("--") if "--" in argv else len(argv)]
    parser = build_parser(next((word for word in argv if not word.startswith("-")), None))
    args = merge_global_flags(parser.parse_args(argv))
    JsonMode.on = args.json
    configure_logging(args.verbose, args.quiet)
    func = getattr(args, "func", None)
    if func is None:
        if args.command is None:
            if args.json:
                parser.error("--json needs a command that prints data")
            from phasef_tui.launcher import launch

            with startup_cache_for("phasef"):
                return launch()
        parser.print_help()
        return EXIT_USAGE
    if args.json and getattr(args, "_no_json", False):
        name = " ".join(p for p in (args.command, *_actions_of(args)) if p)
        emit_json_error(EXIT_USAGE, [f"phasef {name} prints no data; --json is not available for it"])
        return EXIT_USAGE
    with _gathered(args.json) as streams, startup_cache_for(" ".join((args.command, *_actions_of(args)))):
        try:
            code = int(func(args))
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        except BrokenPipeError:
            code = EXIT_FAILED
    if streams is not None and code != EXIT_OK:
        out, err = streams
        if not out.kept.getvalue().strip():  # a command that reports its own failure as JSON is left alone
            emit_json_error(code, err.kept.getvalue().splitlines())
    return code


@contextlib.contextmanager
def startup_cache_for(command: str) -> Iterator[None]:
    """The command's start-up cache (``phasef_tui.startup_cache``): hooked in before its handler imports what it
    needs, written afterwards when the run compiled something new (a TUI also writes it after its first frame)."""
    from phasef_tui import startup_cache

    startup_cache.install(command)
    try:
        yield
    finally:
        startup_cache.save()


def _actions_of(args: argparse.Namespace) -> list[str]:
    """The sub-sub-command words chosen (``config check``), from the ``*_command`` destinations."""
    return [str(v) for k, v in vars(args).items() if k.endswith("_command") and isinstance(v, str)]


if __name__ == "__main__":
    sys.exit(main())
