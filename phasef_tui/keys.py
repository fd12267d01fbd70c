"""Every key of the TUI, with a stable binding id, and the ``[tui.keys]`` keymap that remaps them.

One table is the source of truth for the screens' ``BINDINGS``, the help screen and the command palette, so the
three never disagree. An operator remaps a key by its id in config.toml::

    [tui.keys]
    "traces.follow" = "F"
    "audit.approve" = "ctrl+a"

The keymap is applied with ``App.set_keymap``; an unknown id or a value that is not a key string is reported with
the file, line and key, and the other entries still apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.binding import Binding, BindingType

from pipeline.problems import Problem
from widgets.virtual_list import VirtualList

if TYPE_CHECKING:
    from pipeline.config_section import TuiValues


@dataclass(frozen=True)
class KeyAction:
    id: str
    key: str  # default key(s), comma separated, Textual key names or characters
    action: str
    description: str
    show: bool = True
    priority: bool = False


def _screen(key: str, name: str, description: str) -> KeyAction:
    return KeyAction(f"app.{name}", key, f"app.show_screen('{name}')", description, show=False)


def _replay(name: str, key: str, arg: str, description: str) -> KeyAction:
    return KeyAction(f"app.replay.{name}", key, f"app.replay('{arg}')", f"Replay: {description}", show=False)


def _filter(kind: str, key: str, description: str) -> KeyAction:
    return KeyAction(f"traces.filter.{kind}", key, f"toggle_filter('{kind}')", f"Filter {description}", show=False)


def _exports(scope: str, what: str) -> tuple[KeyAction, KeyAction]:
    """``e`` and ``E``: the screen's current item (or slice) written as Markdown and as JSON."""
    return (
        KeyAction(f"{scope}.export_md", "e", "export('md')", f"Export {what} as Markdown", show=False),
        KeyAction(f"{scope}.export_json", "E", "export('json')", f"Export {what} as JSON", show=False),
    )


SCREEN_NAMES = {
    "dashboard": "Dashboard",
    "traces": "Traces",
    "chains": "Chains",
    "audit": "Audit",
    "report": "Report",
    "sessions": "Sessions",
    "compare": "Compare",
}

APP_KEYS = (
    _screen("1", "dashboard", "Dashboard"),
    _screen("2", "traces", "Traces"),
    _screen("3", "chains", "Recovery chains"),
    _screen("4", "audit", "Audit"),
    _screen("5", "report", "Report"),
    _screen("6", "sessions", "Sessions"),
    _screen("7", "compare", "Compare"),
    _replay("prev_event", "comma", "prev", "previous event"),
    _replay("next_event", "full_stop", "next", "next event"),
    _replay("prev_mark", "less_than_sign", "prev_mark", "previous landmark"),
    _replay("next_mark", "greater_than_sign", "next_mark", "next landmark"),
    _replay("kind", "m", "kind", "landmark kind to jump to"),
    _replay("play", "z", "play", "play / pause"),
    _replay("speed", "Z", "speed", "speed 1x/10x/100x"),
    _replay("time", "J", "time", "jump to a time"),
    _replay("live", "F", "live", "back to live"),
    KeyAction("app.help", "question_mark,f1", "app.help", "Help"),
    KeyAction("app.palette", "ctrl+p", "app.command_palette", "Commands", show=False, priority=True),
    KeyAction("app.quit", "q", "app.quit", "Quit"),
)

SCREEN_KEYS: dict[str, tuple[KeyAction, ...]] = {
    "dashboard": (
        KeyAction("dashboard.next_step", "down,j", "next_step", "Next step", show=False),
        KeyAction("dashboard.prev_step", "up,k", "prev_step", "Previous step", show=False),
        KeyAction("dashboard.current", "c", "current_step", "Current step"),
        KeyAction("dashboard.gate", "g", "open_gate", "Waiting gate"),
        KeyAction("dashboard.retry", "R", "retry_step", "Retry step"),
        KeyAction("dashboard.cancel", "x", "cancel_step", "Cancel step"),
    ),
    "traces": (
        KeyAction("traces.follow", "f", "toggle_follow", "Follow"),
        KeyAction("traces.detail", "v", "toggle_detail", "Detail"),
        KeyAction("traces.search", "slash", "search", "Search"),
        KeyAction("traces.next_match", "n", "find(True)", "Next match", show=False),
        KeyAction("traces.prev_match", "N", "find(False)", "Previous match", show=False),
        KeyAction("traces.chain", "c", "jump_to_chain", "Its chain"),
        _filter("death", "d", "deaths"),
        _filter("recovery", "r", "recoveries"),
        _filter("trap", "t", "traps"),
        _filter("schema_error", "s", "schema errors"),
        _filter("thrash", "h", "thrashing"),
        _filter("deadlock", "l", "deadlocks"),
        KeyAction("traces.filter.clear", "a", "clear_filters", "All records", show=False),
        KeyAction("traces.file", "o", "next_file", "Next trace file", show=False),
        KeyAction("traces.close", "escape", "close_panes", "Close pane", show=False),
        KeyAction("traces.copy", "y", "copy", "Copy record"),
        *_exports("traces", "slice"),
    ),
    "chains": (
        KeyAction("chains.next_tick", "right,n", "step(1)", "Next tick", priority=True),
        KeyAction("chains.prev_tick", "left,p", "step(-1)", "Prev tick", priority=True),
        KeyAction("chains.first_tick", "home,g", "first_tick", "First tick", show=False, priority=True),
        KeyAction("chains.last_tick", "end,G", "last_tick", "Last tick", show=False, priority=True),
        KeyAction("chains.next_chain", "right_square_bracket", "chain(1)", "Next chain"),
        KeyAction("chains.prev_chain", "left_square_bracket", "chain(-1)", "Prev chain", show=False),
        KeyAction("chains.scroll_down", "space", "scroll_step(1)", "Scroll tick down", show=False),
        KeyAction("chains.scroll_up", "b", "scroll_step(-1)", "Scroll tick up", show=False),
        KeyAction("chains.to_trace", "t", "to_trace", "Show in trace"),
        KeyAction("chains.list", "L", "toggle_list", "Chain list", show=False),
        KeyAction("chains.copy", "y", "copy", "Copy chain", show=False),
        *_exports("chains", "chain"),
    ),
    "audit": (
        KeyAction("audit.approve", "a", "decide('go')", "Approve"),
        KeyAction("audit.reject", "r", "decide('no-go')", "Reject"),
        KeyAction("audit.next_gate", "right_square_bracket", "gate(1)", "Next gate"),
        KeyAction("audit.prev_gate", "left_square_bracket", "gate(-1)", "Prev gate", show=False),
        KeyAction("audit.copy", "y", "copy", "Copy verdict"),
        *_exports("audit", "verdict"),
    ),
    "report": (
        KeyAction("report.next_plot", "p", "next_plot(1)", "Next plot"),
        KeyAction("report.prev_plot", "P", "next_plot(-1)", "Prev plot", show=False),
    ),
    "sessions": (
        KeyAction("sessions.open", "enter", "open_session", "Open"),
        KeyAction("sessions.replay", "p", "replay_session", "Replay"),
        KeyAction("sessions.mark", "space", "mark", "Mark A/B"),
        KeyAction("sessions.compare", "c", "compare", "Compare A/B"),
        KeyAction("sessions.sort", "s", "sort", "Sort"),
        KeyAction("sessions.reverse", "r", "reverse", "Reverse", show=False),
        KeyAction("sessions.reload", "f5", "reload", "Reload", show=False),
    ),
    "compare": (
        KeyAction("compare.back", "escape", "back", "Sessions"),
        KeyAction("compare.swap", "x", "swap", "Swap A/B"),
    ),
    "help": (KeyAction("help.close", "escape,q,question_mark", "dismiss", "Close help"),),
    "reason": (KeyAction("reason.cancel", "escape", "cancel", "Cancel the decision"),),
    "jump_time": (KeyAction("jump_time.cancel", "escape", "cancel", "Cancel the jump"),),
}


def widget_bindings() -> dict[str, list[Binding]]:
    """Bindings that widgets declare themselves (lists), grouped by widget."""
    out: dict[str, list[Binding]] = {}
    for name, cls in (("list", VirtualList),):
        out[name] = [b for b in cls.BINDINGS if isinstance(b, Binding)]
    return out


def all_actions() -> list[tuple[str, KeyAction]]:
    """(scope, action) for every key of the TUI, widgets included, in help order."""
    out = [("app", a) for a in APP_KEYS]
    for scope, actions in SCREEN_KEYS.items():
        out.extend((scope, a) for a in actions)
    for scope, bindings in widget_bindings().items():
        for b in bindings:
            if b.id:
                out.append((scope, KeyAction(b.id, b.key, b.action, b.description, b.show, b.priority)))
    return out


def known_ids() -> set[str]:
    return {a.id for _, a in all_actions()}


def bindings(scope: str) -> list[BindingType]:
    """Textual ``Binding`` objects (with ids) for ``scope`` ("app" or a screen name)."""
    actions = APP_KEYS if scope == "app" else SCREEN_KEYS[scope]
    return [Binding(a.key, a.action, a.description, show=a.show, priority=a.priority, id=a.id) for a in actions]


def effective_key(action: KeyAction, keymap: Mapping[str, str]) -> str:
    return keymap.get(action.id, action.key)


def display_key(keys: str) -> str:
    """``question_mark,f1`` -> ``? / f1`` (for help text)."""
    names = {
        "question_mark": "?",
        "slash": "/",
        "right_square_bracket": "]",
        "left_square_bracket": "[",
        "space": "space",
        "escape": "esc",
        "right": "→",
        "left": "←",
        "up": "↑",
        "down": "↓",
    }
    return " / ".join(names.get(k.strip(), k.strip()) for k in keys.split(","))


def load_keymap(
    tui: Mapping[str, Any], file: str = "config.toml", lines: Mapping[tuple[str, ...], int] | None = None
) -> tuple[dict[str, str], list[Problem]]:
    """The valid entries of ``tui["keys"]`` and a problem for each bad one (unknown id, not a key string)."""
    table = tui.get("keys", {})
    lines = lines or {}
    problems: list[Problem] = []

    def problem(key: str, message: str) -> None:
        where = lines.get(("tui", "keys", key)) or lines.get(("tui", "keys"))
        problems.append(Problem(file, where, message, f"tui.keys.{key}"))

    if not isinstance(table, Mapping):
        problems.append(Problem(file, lines.get(("tui", "keys")), "must be a table", "tui.keys"))
        return {}, problems
    ids = known_ids()
    keymap: dict[str, str] = {}
    for binding_id, value in table.items():
        if binding_id not in ids:
            problem(binding_id, "unknown binding id (see the help screen, '?', for every id)")
        elif not isinstance(value, str) or not value.strip() or any(not k.strip() for k in value.split(",")):
            problem(binding_id, f'expected a key such as "ctrl+f" or "F", got {value!r}')
        else:
            keymap[binding_id] = ",".join(k.strip() for k in value.split(","))
    return keymap, problems


def _plain(problem: Problem) -> Problem:
    """The problem without pydantic's "Value error, " (the viewer shows it in a line of its own)."""
    return Problem(problem.file, problem.line, problem.reason.removeprefix("Value error, "), problem.field)


def read_tui(path: Path) -> tuple[TuiValues, list[Problem], dict[tuple[str, ...], int]]:
    """``[tui]`` of a config file, alone (the viewer must open even when the rest of the plan is invalid): the
    section with its bad entries left out, a problem for each, and the file's key lines. A missing file is no
    remapping and no theme; an unreadable one, a problem. (``pipeline.config_section``, not the whole config model:
    the viewer's start-up does not pay for the plan's models and checker.)"""
    from pipeline.config_section import ConfigError, TuiValues
    from pipeline.config_section import read_tui as read_tui_section

    try:
        section = read_tui_section(path, missing_ok=True)
    except ConfigError as exc:
        return TuiValues(), list(exc.issues), {}
    return section.value, [_plain(i) for i in section.issues], section.lines


TuiRead = tuple["TuiValues", list[Problem], dict[tuple[str, ...], int]]
"""What ``read_tui`` returns: the section, its problems, the file's key lines."""


def keymap_from_config(path: Path, read: TuiRead | None = None) -> tuple[dict[str, str], list[Problem]]:
    """The valid entries of ``[tui.keys]`` of a config file and a problem for each bad one (``read``: the file's
    ``[tui]`` already read with ``read_tui``, so the keys and the theme read it once)."""
    tui, problems, lines = read if read is not None else read_tui(path)
    mine = [p for p in problems if p.field in ("", "tui", "tui.keys") or p.field.startswith("tui.keys.")]
    keymap, unknown = load_keymap({"keys": tui.keys}, str(path), lines)
    return keymap, sorted(mine + unknown, key=lambda p: (p.line is None, p.line or 0))


def unknown_binding_ids(path: Path) -> list[Problem]:
    """A problem for each ``[tui.keys]`` entry of a config file whose id names no binding (``config check``)."""
    tui, _, lines = read_tui(path)
    return load_keymap({"keys": tui.keys}, str(path), lines)[1]
