"""The dirty-trace stream: one line per record, following the end of a growing trace like ``tail -f``.

Follow mode keeps the cursor on the newest record. Moving up (keys or mouse wheel) turns it off so the operator can
read; new records then only bump an "N new" marker at the bottom, and End (or the follow key) turns it back on.
The rows come from a ``TraceRows`` source: this widget never reads a file.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip

from pipeline.traces.summary_columns import (
    FLAG_DEADLOCK,
    FLAG_DEATH,
    FLAG_RECOVERED,
    FLAG_RECOVERY,
    FLAG_SCHEMA_ERROR,
    FLAG_THRASH,
    FLAG_TRAP,
)
from widgets.theme import themed
from widgets.virtual_list import VirtualList

BADGES: tuple[tuple[int, str, str], ...] = (
    (FLAG_DEATH, "D", "bad.b"),
    (FLAG_RECOVERY, "R", "good"),
    (FLAG_TRAP, "T", "attn"),
    (FLAG_SCHEMA_ERROR, "S", "warn"),
    (FLAG_THRASH, "X", "info"),
    (FLAG_DEADLOCK, "L", "bad.b"),
)
"""Flag -> badge letter and colour, in column order (a dim dot when unset)."""

OUTCOME_STYLES = {
    "ok": "good",
    "success": "good.b",
    "error": "warn",
    "timeout": "warn",
    "death": "bad.b",
    "failure": "bad",
    "aborted": "bad",
}


@dataclass(frozen=True, kw_only=True)
class TickFields:
    """What a tick record says that both a stream row and a chain step (``widgets.chain_stepper``) show."""

    episode: str | None = None
    tick: int | None = None
    actor: str | None = None
    outcome: str | None = None
    error_class: str | None = None
    recovery: str | None = None
    latency_s: float | None = None
    context_chars: int | None = None


@dataclass(frozen=True)
class TraceRow(TickFields):
    """What one line of the stream shows about one record."""

    line: int  # 0-based line number in the file; negative: counted from the end (-1: the last line), not known yet
    kind: str  # episode_start / tick / episode_end / ? (not a record)
    flags: int = 0
    chain: str | None = None
    chain_role: str | None = None
    problem: str | None = None  # why the line is not a usable record
    match: bool = False  # the current search matches this line


class TraceRows(Protocol):
    """The rows a stream shows: the whole trace or a filtered part of it."""

    def __len__(self) -> int: ...

    def row(self, pos: int) -> TraceRow: ...

    def prepare(self, first: int, last: int) -> None:
        """Rows ``first..last`` are about to be drawn (fetch them in one go if that is cheaper)."""


Cell = tuple[str, str]
"""A piece of a row: its text and a style string."""


def badge_cells(flags: int) -> list[Cell]:
    return [(letter, themed(role)) if flags & flag else ("·", "dim") for flag, letter, role in BADGES]


def badges(flags: int) -> Text:
    return Text.assemble(*badge_cells(flags))


WIDE = 100
"""From this width on, the stream shows latency and context size too."""


def row_cells(row: TraceRow, line_width: int, width: int = WIDE) -> list[Cell]:
    """The pieces of a record's line; narrower than ``WIDE`` columns, the columns are tighter and the latency and
    context size are left to the detail pane. (Cells, not a rich Text: a flooded stream draws thousands of rows a
    second, and cells become segments without Text's machinery.)"""
    wide = width >= WIDE
    number = row.line + 1 if row.line >= 0 else row.line  # (from the end: -1 is the last line)
    cells: list[Cell] = [(f"{number:>{line_width}} ", "dim"), *badge_cells(row.flags), (" ", "")]
    if row.problem is not None:
        cells.append((row.problem.replace("\n", " "), themed("bad.b")))
        return cells
    ep_width = 14 if wide else 10
    cells.append((f"{(row.episode or '-')[-ep_width:]:<{ep_width}} ", "bold"))
    if row.kind == "episode_start":
        cells.append(("▶ episode start", themed("info.b")))
        return cells
    if row.kind == "episode_end":
        cells.append(("■ episode end ", themed("info.b")))
        cells.append((row.outcome or "?", themed(OUTCOME_STYLES.get(row.outcome or "", ""))))
        return cells
    if row.kind != "tick":
        cells.append((f"? kind {row.kind}", themed("bad")))
        return cells
    tick = "" if row.tick is None else str(row.tick)
    actor_width, error_width, chain_width = (8, 15, 16) if wide else (6, 12, 13)
    chain = f"{row.chain}:{row.chain_role or '?'}" if row.chain else ""
    cells += [
        (f"t{tick:<4} ", "dim"),
        (f"{(row.actor or '?')[:actor_width]:<{actor_width}} ", themed("info") if row.actor != "model" else ""),
        (f"{(row.outcome or '?'):<7} ", themed(OUTCOME_STYLES.get(row.outcome or "", ""))),
        (f"{(row.error_class or '')[:error_width]:<{error_width}} ", themed("warn")),
        (f"{chain[:chain_width]:<{chain_width}} ", themed("good") if row.flags & FLAG_RECOVERED else themed("attn")),
    ]
    if wide:
        latency = "" if row.latency_s is None else f"{row.latency_s:6.2f}s"
        context = "" if row.context_chars is None else f"{row.context_chars:,}c"
        cells += [(f"{latency:>7} ", "dim"), (f"{context:>7}", "dim")]
    if row.recovery:
        cells.append((f" {row.recovery}", themed("good")))
    return cells


def format_row(row: TraceRow, line_width: int, width: int = WIDE) -> Text:
    """The record's line as rich Text (what the stream draws, for tests and other uses)."""
    text = Text.assemble(*row_cells(row, line_width, width))
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


class TraceStream(VirtualList):
    """The live stream of trace records with follow mode and an "N new" marker."""

    COMPONENT_CLASSES = {"trace-stream--new", "trace-stream--match"}

    follow: reactive[bool] = reactive(True)
    new_rows: reactive[int] = reactive(0)

    class FollowChanged(Message):
        def __init__(self, follow: bool) -> None:
            super().__init__()
            self.follow = follow

    empty_text = "no records (yet)"

    def __init__(self, rows: TraceRows, *, follow: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self._cell_styles: dict[Style, dict[str, Style]] = {}
        self._last_row: tuple[int, TraceRow] | None = None
        self.rows = rows
        self.set_reactive(TraceStream.follow, follow)

    def row_key(self, pos: int) -> Hashable:
        row = self.rows.row(pos)
        self._last_row = (pos, row)  # drawn right after, if not cached: fetch it once
        return (row, len(f"{self.count}"))

    def render_row(self, pos: int, width: int) -> Text:
        row = self.rows.row(pos)
        digits = max(5, len(f"{self.count}"))
        text = format_row(row, digits, width)
        if row.match:
            text.stylize(self.get_component_rich_style("trace-stream--match"), 0, digits)
        return text

    def render_row_strip(self, pos: int, width: int, line_style: Style) -> Strip:
        """Segments straight from the row's cells, with parsed styles kept per line style (no rich Text)."""
        row = self._last_row[1] if self._last_row is not None and self._last_row[0] == pos else self.rows.row(pos)
        cells = row_cells(row, max(5, len(f"{self.count}")), width)
        styles = self._cell_styles.get(line_style)
        if styles is None:
            styles = self._cell_styles[line_style] = {}
        segments = []
        for index, (text, name) in enumerate(cells):
            if index == 0 and row.match:
                segments.append(Segment(text, line_style + self.get_component_rich_style("trace-stream--match")))
                continue
            cached = styles.get(name)
            if cached is None:
                cached = styles[name] = line_style + Style.parse(name) if name else line_style
            segments.append(Segment(text, cached))
        return Strip(segments).crop_extend(0, width, line_style)

    def prepare_rows(self, first: int, last: int) -> None:
        self.rows.prepare(first, last)

    def set_rows(self, rows: TraceRows) -> None:
        """Show another row source (a new filter); the caller positions the cursor."""
        self.rows = rows
        self._last_row = None
        self.new_rows = 0
        self.set_count(len(rows))
        self.refresh()

    def sync(self, *, hold: bool = False) -> None:
        """Take in rows that arrived since the last frame (called at the frame rate, not per record).

        ``hold`` keeps the cursor where it is even when following: while a big file is first scanned its end moves
        every frame, and a view that chased it would drift; the caller releases the hold once the scan caught up.
        """
        count = len(self.rows)
        grown = count - self.count
        if grown == 0:
            return
        self.set_count(count)
        if hold:
            return
        if self.follow:
            self.cursor = count - 1
        elif grown > 0:
            self.new_rows += grown

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.new_rows = 0
            self.cursor = self.count - 1
        self.post_message(self.FollowChanged(follow))

    def watch_new_rows(self) -> None:
        self.refresh()

    def _leave_follow(self) -> None:
        if self.follow:
            self.follow = False

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def action_cursor_up(self) -> None:
        self._leave_follow()
        super().action_cursor_up()

    def action_page_up(self) -> None:
        self._leave_follow()
        super().action_page_up()

    def action_first(self) -> None:
        self._leave_follow()
        super().action_first()

    def action_last(self) -> None:
        self.follow = True
        super().action_last()

    def action_cursor_down(self) -> None:
        super().action_cursor_down()
        if self.cursor == self.count - 1 and self.new_rows:
            self.new_rows = 0

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._leave_follow()

    def on_click(self, event: events.Click) -> None:
        self._leave_follow()  # (the base class's handler moves the cursor: Textual calls both)

    def move_to(self, pos: int) -> None:
        """Put the cursor on ``pos`` (a jump), which stops following unless it is the last row."""
        if pos < self.count - 1:
            self._leave_follow()
        self.cursor = pos

    def render_line(self, y: int) -> Strip:
        height = self.scrollable_content_region.height
        if self.new_rows and y == height - 1:
            width = self.scrollable_content_region.width
            style = self.get_component_rich_style("trace-stream--new")
            label = f" ▼ {self.new_rows:,} new · End to follow "
            text = Text(label.rjust(width), style=style)
            return self._strip(text, width, self.rich_style + Style(bold=True))
        return super().render_line(y)
