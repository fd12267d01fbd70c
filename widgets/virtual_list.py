"""A keyboard-driven list of any length that renders only the rows on screen (Textual's Line API).

A list of a million records cannot be a million widgets: this one knows only ``count`` and asks its subclass to render
row ``pos`` when that row is visible. It owns a cursor (the selected row) and reports moves with messages; the data
lives elsewhere and is passed in.
"""

from __future__ import annotations

from collections.abc import Hashable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

CURSOR = "virtual-list--cursor"
STRIP_CACHE = 256
"""Rendered rows kept for reuse (a few screens' worth; more would only be more for the garbage collector)."""


class RowMessage(Message):
    """A message about row ``pos`` of a list (its ``control`` is the list)."""

    def __init__(self, sender: VirtualList, pos: int) -> None:
        super().__init__()
        self.sender = sender
        self.pos = pos

    @property
    def control(self) -> VirtualList:
        return self.sender


class VirtualList(ScrollView, can_focus=True):
    """Rows ``0..count-1`` drawn on demand by ``render_row``; a cursor moved with the usual keys."""

    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False, id="list.up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="list.down"),
        Binding("pageup", "page_up", "Page up", show=False, id="list.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="list.page_down"),
        Binding("home", "first", "First", show=False, id="list.first"),
        Binding("end", "last", "Last", show=False, id="list.last"),
        Binding("enter", "select", "Select", show=False, id="list.select"),
    ]

    COMPONENT_CLASSES = {CURSOR, "virtual-list--empty"}

    count: reactive[int] = reactive(0, repaint=False)
    cursor: reactive[int] = reactive(0, repaint=False)

    class CursorMoved(RowMessage):
        """The cursor moved to row ``pos``."""

    class Selected(RowMessage):
        """Enter was pressed on row ``pos``."""

    empty_text = "nothing to show"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._strips: LRUCache[tuple[Hashable, int, bool, Style], Strip] = LRUCache(STRIP_CACHE)
        self._pass: tuple[int, Style, Style] | None = None

    # -- to override -----------------------------------------------------------------------------------------------
    def render_row(self, pos: int, width: int) -> Text:
        """The text of row ``pos`` (only called for visible rows)."""
        return Text(str(pos))

    # -- data --------------------------------------------------------------------------------------------------------
    def set_count(self, count: int) -> None:
        """Tell the list how many rows there are now (the data itself is read through ``render_row``)."""
        self.count = count

    def watch_count(self, old: int, new: int) -> None:
        self.virtual_size = Size(self.size.width, new)
        if new == 0:
            self.cursor = 0
        elif self.cursor >= new:
            self.cursor = new - 1
        self.refresh()

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, self.count - 1)) if self.count else 0

    def watch_cursor(self, old: int, new: int) -> None:
        self.scroll_to_row(new)
        self.refresh()
        self.post_message(self.CursorMoved(self, new))

    def scroll_to_row(self, pos: int) -> None:
        """Scroll just enough to show row ``pos``; again after the next refresh, when a new size (more rows, a
        resize) has been laid out and the scroll range allows it."""
        self._scroll_to_row(pos)
        self.call_after_refresh(self._scroll_to_row, pos)

    def _scroll_to_row(self, pos: int) -> None:
        height = self.scrollable_content_region.height or 1
        top = int(self.scroll_y)
        if pos < top:
            self.scroll_to(y=pos, animate=False, immediate=True)
        elif pos >= top + height:
            self.scroll_to(y=pos - height + 1, animate=False, immediate=True)

    def move_to(self, pos: int) -> None:
        self.cursor = pos

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, self.count)
        self.scroll_to_row(self.cursor)

    # -- actions -----------------------------------------------------------------------------------------------------
    def action_cursor_up(self) -> None:
        self.cursor -= 1

    def action_cursor_down(self) -> None:
        self.cursor += 1

    def action_page_up(self) -> None:
        self.cursor -= max(1, self.scrollable_content_region.height - 1)

    def action_page_down(self) -> None:
        self.cursor += max(1, self.scrollable_content_region.height - 1)

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = self.count - 1

    def action_select(self) -> None:
        if self.count:
            self.post_message(self.Selected(self, self.cursor))

    def on_click(self, event: events.Click) -> None:
        pos = int(self.scroll_y) + event.y
        if 0 <= pos < self.count:
            self.cursor = pos

    # -- drawing -----------------------------------------------------------------------------------------------------
    def prepare_rows(self, first: int, last: int) -> None:
        """Called before rows ``first..last`` are drawn (a chance to fetch them in one go); nothing by default."""

    def render_lines(self, crop: Region) -> list[Strip]:
        top = int(self.scroll_y) + crop.y
        if self.count:
            self.prepare_rows(top, min(self.count - 1, top + crop.height - 1))
        # styles and width once per pass, not per line (they are computed properties, and a flood draws every line)
        base = self.rich_style
        self._pass = (self.scrollable_content_region.width, base, base + self.get_component_rich_style(CURSOR))
        try:
            return super().render_lines(crop)
        finally:
            self._pass = None

    def render_line(self, y: int) -> Strip:
        if self._pass is not None:
            width, base, cursor_style = self._pass
        else:
            base = self.rich_style
            width, cursor_style = self.scrollable_content_region.width, base + self.get_component_rich_style(CURSOR)
        pos = int(self.scroll_y) + y
        if self.count == 0:
            if y == 0:
                style = self.get_component_rich_style("virtual-list--empty")
                return self._strip(Text(self.empty_text, style=style), width, base)
            return Strip.blank(width, base)
        if pos >= self.count:
            return Strip.blank(width, base)
        on_cursor = pos == self.cursor
        key = self.row_key(pos)
        cache_key = (key, width, on_cursor, base)
        if key is not None:
            cached = self._strips.get(cache_key)
            if cached is not None:
                return cached
        strip = self.render_row_strip(pos, width, cursor_style if on_cursor else base)
        if key is not None:
            self._strips.set(cache_key, strip)
        return strip

    def render_row_strip(self, pos: int, width: int, line_style: Style) -> Strip:
        """Row ``pos`` drawn on ``line_style`` (the list's, or the cursor's); by default from ``render_row``."""
        return self._strip(self.render_row(pos, width), width, line_style)

    def row_key(self, pos: int) -> Hashable | None:
        """What row ``pos`` shows, as a hashable value: rows with equal keys are drawn once and reused (a stream
        that scrolls by a few rows a frame redraws only the new ones). None: no reuse."""
        return None

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def _strip(self, text: Text, width: int, style: Style) -> Strip:
        text.no_wrap = True
        text.overflow = "ellipsis"
        segments = [Segment(s.text, style + s.style if s.style else style) for s in text.render(self.app.console)]
        return Strip(segments).crop_extend(0, width, style)
