"""What the pre-forked session server (``zygote.py``) does before its first fork: import the TUI and what an
attached session runs, build the CLI parser once, parse the stylesheet and run the app once off-screen, gather the
code that run executed on pages of its own, read the served session ahead (``attach_ahead``), then freeze the
garbage collector's view of it all, so forked sessions share those pages instead of building their own."""

from __future__ import annotations

import contextlib
import gc
import importlib
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any


def preload(modules: tuple[str, ...], warm: bool, warm_session: str | None = None) -> None:
    for name in modules:
        importlib.import_module(name)
    if warm:
        import pkgutil

        from phasef_tui import commands

        for info in pkgutil.iter_modules(commands.__path__):  # what the CLI imports to build its parser
            importlib.import_module(f"{commands.__name__}.{info.name}")
        # what is not done ahead, each child does itself (as a new interpreter does): time, nothing else
        executed: dict[types.CodeType, None] = {}
        with calls_recorded(executed):
            shared = ahead("the CLI's parser was not built", share_cli_parser)
        share_parsed_css()
        ahead("the stylesheet was not parsed", warm_stylesheet)
        if warm_session:
            with calls_recorded(executed):
                ran = ahead("the TUI was not run", lambda: warm_app(warm_session))
            if ran:
                gc.collect()  # the run's garbage first, so that the copies below fill its holes, not new pages
                also = module_code(NOT_RUN_AHEAD)
                ahead("the code the TUI ran was not gathered", lambda: gather_code([*executed, *also]))
                # again, on the copies: the interpreter specialises the bytecode it runs (a write into the code
                # object); done here, the children share that too
                ahead("the TUI was not run again", lambda: warm_app(warm_session))
                if shared:
                    ahead("the CLI's parser was not used again", parse_attach)
                # the served session read as a session reads it at start: each one goes on from there
                ahead("the session was not read ahead", lambda: read_ahead(warm_session))
    import threading

    if threading.active_count() != 1:  # a fork would copy locks held by threads that do not exist in the child
        raise SystemExit(f"phasef session server: threads left running, cannot fork: {threading.enumerate()}")
    gc.collect()
    gc.freeze()


def read_ahead(session: str) -> None:
    from pathlib import Path

    from phasef_tui import attach_ahead

    if not attach_ahead.prepare(Path(session)):
        raise FileNotFoundError(f"{session}: no journal")


def ahead(failed: str, step: Callable[[], object]) -> bool:
    """Run a warm-up ``step``; if it fails (argparse exits on a command line it rejects), say so and go on."""
    try:
        step()
    except (Exception, SystemExit) as exc:
        print(f"phasef session server: {failed} ahead: {exc!r}", file=sys.stderr)
        return False
    return True


@contextlib.contextmanager
def calls_recorded(into: dict[types.CodeType, None]) -> Iterator[None]:
    """Record the code objects of the Python functions called in the block, in the order of their first call."""

    def profile(frame: types.FrameType, event: str, _arg: object) -> None:
        if event == "call":
            into.setdefault(frame.f_code, None)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(previous)


RETIRED_CODE: list[types.CodeType] = []
"""The code objects ``gather_code`` replaced, kept alive: freed, they would leave holes in shared pages that a
child's allocations fill (each one copying its page)."""


NOT_RUN_AHEAD = (
    "textual.drivers.linux_driver",
    "textual.drivers._writer_thread",
    "textual.drivers._input_reader_linux",
    "threading",
    "queue",
    "selectors",
    "pipeline.watch",
    "phasef_tui.session_source",
    "phasef_tui.ssh.attach",
)
"""Modules whose code a session runs but the warm-up cannot: the terminal's driver and its threads (the warm-up
draws into a driver that discards), the journal's reader thread and file follower (it starts no thread), the SSH
session's entry. Their functions' code is gathered whole (``module_code``)."""


def module_code(names: tuple[str, ...]) -> list[types.CodeType]:
    """The code of every function the modules ``names`` define (methods, properties and nested code included), for
    ``gather_code``; a module not imported is skipped."""
    found: dict[types.CodeType, None] = {}

    def add(code: types.CodeType) -> None:
        if code not in found:
            found[code] = None
            for const in code.co_consts:
                if isinstance(const, types.CodeType):
                    add(const)

    for name in names:
        module = sys.modules.get(name)
        if module is None:
            continue
        for value in vars(module).values():
            owners = vars(value).values() if isinstance(value, type) and value.__module__ == name else (value,)
            for item in owners:
                for part in (item, *(getattr(item, a, None) for a in ("__func__", "fget", "fset"))):
                    if isinstance(part, types.FunctionType) and part.__module__ == name:
                        add(part.__code__)
    return list(found)


def gather_code(executed: list[types.CodeType]) -> int:
    """Give the functions whose code the warm-up ran fresh copies of that code, allocated one after another in the
    order the run first called them, and return how many functions were changed.

    CPython 3.11 writes into every code object a session runs (its reference count at each call; the specialising
    interpreter's counters in its bytecode), so each page holding one is copied into that session. The imports left
    the code a session runs scattered among code it never runs (each module's functions lie together, used or
    not): ~1,900 code objects on pages holding much more. Gathered, they share fewer pages, and each child copies
    fewer (measured: 1.3 MB less private memory per session). A copy is the same code (``code.replace()``:
    bytecode, constants, names, line table), so behaviour, tracebacks and line numbers are unchanged; nested code
    that was run (closures, comprehensions) is copied with the code that makes it."""
    run = set(executed)
    copies: dict[types.CodeType, types.CodeType] = {}

    def copy(code: types.CodeType) -> types.CodeType:
        if code not in copies:
            consts = tuple(copy(c) if isinstance(c, types.CodeType) and c in run else c for c in code.co_consts)
            copies[code] = code.replace(co_consts=consts)
        return copies[code]

    for code in executed:
        copy(code)
    changed = 0
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and obj.__code__ in copies:
            with contextlib.suppress(ValueError):  # (a code object that does not fit its function's closure)
                obj.__code__ = copies[obj.__code__]
                changed += 1
    RETIRED_CODE.extend(copies)
    return changed


def share_cli_parser() -> None:
    """Build the CLI's argument parser once, here, and have every child parse its command with it.

    Each ``phasef`` run builds the parser of its sub-command before it parses two words. The parser does not change
    once built, and parsing does not change it, so the one built here serves every child (``build_parser`` of the
    imported CLI returns it; see ``ENTRY_POINTS``). It is used once here first, on an ``attach`` as a session runs
    it, so that the code parsing runs is warm too."""
    from phasef_tui import cli

    parser = cli.build_parser()
    parser.parse_args(WARM_UP_ATTACH)
    cli.build_parser = lambda command=None: parser  # (the whole parser serves every command)


WARM_UP_ATTACH = ["attach", "warm-up-session", "--as", "warm-up"]


def parse_attach() -> None:
    """Parse a session's command line with the shared parser (after ``gather_code``: the copies' first run)."""
    from phasef_tui import cli

    cli.build_parser().parse_args(WARM_UP_ATTACH)


SHARED_CSS_ENTRIES = 1024


def share_parsed_css() -> None:
    """One table of parsed CSS for the whole process, filled by the warm-up and inherited by every child.

    Textual keeps parsed rules per ``Stylesheet`` object, and an app builds several (its own, then a fresh one at
    each ``refresh_css``), so each app tokenizes and parses every widget's CSS about three times: a third of the
    time to a first frame. Parsing depends only on the CSS text, where it was read from, its scope and tie-breaker,
    and the theme's variables, so those are the key; a rule set is not changed once parsed. Errors are not kept
    (they raise, as before)."""
    from textual.css.model import RuleSet
    from textual.css.stylesheet import Stylesheet

    original = Stylesheet._parse_rules
    import inspect

    expected = ["self", "css", "read_from", "is_default_rules", "tie_breaker", "scope"]
    if list(inspect.signature(original).parameters) != expected:
        return  # another Textual: its parser is left as it is (each child parses its CSS itself)
    table: dict[tuple[Any, ...], list[RuleSet]] = {}

    def parse_rules(
        self: Stylesheet,
        css: str,
        read_from: Any,
        is_default_rules: bool = False,
        tie_breaker: int = 0,
        scope: str = "",
    ) -> list[RuleSet]:
        key = (css, read_from, is_default_rules, tie_breaker, scope, tuple(getattr(self, "_variables", {}).items()))
        rules = table.get(key)
        if rules is None:
            rules = original(self, css, read_from, is_default_rules, tie_breaker, scope)
            if len(table) < SHARED_CSS_ENTRIES:
                table[key] = rules
        return rules

    Stylesheet._parse_rules = parse_rules  # type: ignore[method-assign]


def warm_stylesheet() -> None:
    """Parse the TUI's stylesheet once: Textual caches parsed selectors and declarations per process, so every
    child starts with them parsed. The Stylesheet object itself is per app and is not kept."""
    import inspect
    from pathlib import Path

    from textual.css.stylesheet import Stylesheet
    from textual.theme import BUILTIN_THEMES

    from phasef_tui.app import PhasefApp

    theme = BUILTIN_THEMES["textual-dark"]
    sheet = Stylesheet(variables={**theme.to_color_system().generate(), **theme.variables})
    folder = Path(inspect.getfile(PhasefApp)).parent
    # the shared rules and each main screen's own (read when the screen is first shown), so no session parses them
    for css in dict.fromkeys([folder / str(PhasefApp.CSS_PATH), *sorted(folder.glob("*.tcss"))]):
        sheet.read(css)
    sheet.parse()


def warm_app(session: str, size: tuple[int, int] = (120, 35), timeout: float = 30.0) -> None:
    """Run the TUI once on ``session`` to its first frame, into a driver that discards the output, and exit.

    What a child does to show its first frame is then done once here: the modules screens import when they are
    built, the stylesheet of every widget, Rich's and Textual's module caches, and the interpreter's specialisation
    of the code that renders (it rewrites the bytecode it runs; done here, the children share it instead of each
    copying those pages). The run reads the session but starts no reader thread and does not connect to the
    supervisor; the app and everything it built are collected before the first fork.
    """
    import asyncio
    import threading
    from pathlib import Path

    from textual import events
    from textual.driver import Driver
    from textual.geometry import Size

    from phasef_tui.app import PhasefApp, load_tui_settings
    from phasef_tui.replay_source import ReplaySource
    from phasef_tui.screens.base import PhasefScreen
    from phasef_tui.session_source import session_config_path

    cols, rows = size

    class DiscardingDriver(Driver):
        """A terminal of a fixed size that takes the app's frames and drops them."""

        @property
        def is_headless(self) -> bool:
            return False  # render to escape sequences, as for a terminal

        def _get_terminal_size(self) -> tuple[int, int]:
            return cols, rows

        def write(self, data: str) -> None:
            pass

        def start_application_mode(self) -> None:
            asyncio.get_running_loop().create_task(
                self._app._post_message(events.Resize(Size(cols, rows), Size(cols, rows)))
            )

        def disable_input(self) -> None:
            pass

        def stop_application_mode(self) -> None:
            pass

    folder = Path(session)
    # built as `phasef attach` builds it (run_attach), so that a child runs the code the warm-up ran
    source = ReplaySource(folder, operator="warm-up", control_socket=None, follow=True, attached=True)
    source.start = source.scan_traces  # type: ignore[method-assign]  # no reader thread, no file watcher
    app = PhasefApp(source, **load_tui_settings(session_config_path(folder)))
    app.driver_class = DiscardingDriver

    async def run() -> None:
        task = asyncio.ensure_future(app.run_async())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not task.done():
            screen = app.screen if app.is_running and app._screen_stack else None
            if isinstance(screen, PhasefScreen) and screen.view_ready and app.frames > 0:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # the first frames written
        app.exit()
        await asyncio.wait_for(task, timeout)

    try:
        asyncio.run(run())
    finally:
        for thread in threading.enumerate():
            if thread is not threading.main_thread():
                thread.join(5)
