"""The lines around the trace stream: the kind filters with their counts, and the stream's status.

Both are pure views of a ``FilterState`` the screen builds each frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text

from widgets.status_line import StatusLine
from widgets.theme import themed

FILTER_LABELS: tuple[tuple[str, str], ...] = (
    ("death", "death"),
    ("recovery", "recovery"),
    ("trap", "trap"),
    ("schema_error", "schema"),
    ("thrash", "thrash"),
    ("deadlock", "deadlock"),
)
"""Filter name -> label, in display order."""


@dataclass(frozen=True)
class FilterState:
    active: frozenset[str] = frozenset()
    counts: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # filter -> key bound to it (after the keymap)
    shown: int = 0
    total: int = 0
    cursor: int = 0
    summarized_pct: float = 100.0
    indexed_pct: float = 100.0
    search: str | None = None
    search_note: str | None = None
    follow: bool = True
    source: str = ""
    tail: bool = False  # the rows are the file's last lines, read back from its end before the scan got there


def compact_count(n: int) -> str:
    if n < 1000:
        return str(n)
    if n < 10_000:
        return f"{n / 1000:.1f}k"
    if n < 1_000_000:
        return f"{n // 1000}k"
    return f"{n / 1_000_000:.1f}M"


def _label_with_key(label: str, key: str, on: bool) -> Text:
    """The label with its key underlined in place when the key is one of its letters, else prefixed."""
    style = "bold reverse" if on else ""
    text = Text()
    at = label.find(key) if len(key) == 1 else -1
    if at < 0:
        text.append(f"{key}:", style="bold underline")
        text.append(label, style=style)
        return text
    text.append(label[:at], style=style)
    text.append(label[at], style=f"{style} bold underline".strip())
    text.append(label[at + 1 :], style=style)
    return text


def render_filters(state: FilterState) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for name, label in FILTER_LABELS:
        on = name in state.active
        key = state.keys.get(name, label[0])
        text.append_text(_label_with_key(label, key, on))
        text.append(f" {compact_count(state.counts.get(name, 0))}  ", style="dim")
    if state.active:
        text.append("(filtered)", style=themed("warn.b"))
    return text


def render_status(state: FilterState) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("FOLLOW " if state.follow else "paused ", style=themed("good.b") if state.follow else themed("warn.b"))
    position = f"{state.cursor + 1:,}/{state.shown:,}" if state.shown else "0/0"
    if state.tail:  # line numbers are not known yet: count from the end
        position = f"{state.cursor - state.shown:,} from the end"
    text.append(position, style="bold")
    if state.active:
        text.append(f" of {state.total:,}", style="dim")
    if state.indexed_pct < 100:
        text.append(f"  indexing {state.indexed_pct:.0f}%", style=themed("warn"))
    elif state.summarized_pct < 100:
        text.append(f"  scanning {state.summarized_pct:.0f}%", style=themed("warn"))
    if state.search:
        text.append(f"  /{state.search}", style="bold")
        if state.search_note:
            text.append(f" {state.search_note}", style="dim")
    if state.source:
        text.append(f"  {state.source}", style="dim")
    return text


class FilterBar(StatusLine):
    def show(self, state: FilterState) -> None:
        self.show_text(render_filters(state))


class StreamStatus(StatusLine):
    def show(self, state: FilterState) -> None:
        self.show_text(render_status(state))
