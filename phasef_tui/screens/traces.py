"""Traces: the live dirty-trace stream with follow mode, kind filters, search, a detail pane, and chain jumps."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input

from phasef_tui.data_source import CHANGED_TRACE_FILE, CHANGED_TRACES
from phasef_tui.keys import SCREEN_KEYS, bindings, effective_key
from phasef_tui.screens.trace_actions import TraceActions
from phasef_tui.trace_feed import FeedRows, LineSelection, TailRows, TraceFeed
from pipeline.traces.index import TailLines
from widgets.filter_bar import FilterBar, FilterState, StreamStatus
from widgets.trace_stream import TraceRow, TraceStream
from widgets.virtual_list import VirtualList

if TYPE_CHECKING:
    from widgets.record_detail import RecordDetail

SCAN_SYNC_S = 0.25
"""While a file is first scanned the row count grows every frame; taking it in 4 times a second is enough (the view
holds still meanwhile) and leaves the interpreter to the scan."""


class _NoRows:
    """Rows of a screen that has no trace yet."""

    def __len__(self) -> int:
        return 0

    def row(self, pos: int) -> TraceRow:
        raise IndexError(pos)

    def prepare(self, first: int, last: int) -> None:
        """Nothing to fetch."""


FILTER_KEY_IDS = {
    a.id.removeprefix("traces.filter."): a for a in SCREEN_KEYS["traces"] if a.id.startswith("traces.filter.")
}


class TracesScreen(TraceActions):
    SCREEN_NAME = "Traces"
    BINDINGS = bindings("traces")

    def __init__(self) -> None:
        super().__init__()
        self.kinds: frozenset[str] = frozenset()
        self.selection: LineSelection | None = None
        self.search: str | None = None
        self.search_note: str | None = None
        self._detail_line: int | None = None
        self._pending_line: int | None = None
        self._was_caught_up = False
        self._paused_by_detail = False
        self._synced_at = 0.0
        self._summarized_seen = 0
        self._detail: RecordDetail | None = None
        self._search: Input | None = None
        """The detail pane and the search line, once first opened."""
        self._bound_feed: TraceFeed | None = None
        """The feed the selection and the stream's rows were built from."""
        self._tail: TailLines | None = None
        """While the first scan has not reached the end, End (or following) shows the file's last lines read back
        from its end (``TailRows``); the full view comes back once the scan got there."""

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        feed = self.source.feed
        # a followed file opens at its end (once scanned); a finished one at its first line
        stream = TraceStream(_NoRows(), id="stream", follow=feed.follow if feed is not None else True)
        # the bars are filled before they are mounted, so the first frame has them (see ``compose_tabs``)
        if feed is not None:
            self.selection = LineSelection(feed.index, self.kinds)
            self.selection.update()
        state = self._filter_state(stream)
        filters = FilterBar(id="filters")
        filters.show(state)
        status = StreamStatus(id="stream-status")
        status.show(state)
        yield filters
        with Vertical(id="trace-body"):  # (the detail pane is mounted in it when first opened)
            yield stream
        # (the search line is mounted above the status line when first opened)
        yield status
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.stream.focus()
        feed = self.source.feed
        # a followed file opens at its end (once scanned); a finished one at its first line
        self.stream.set_reactive(TraceStream.follow, feed.follow if feed is not None else True)
        self._rebuild(keep_line=None)

    # -- data ------------------------------------------------------------------------------------------------------
    def _rebuild(self, keep_line: int | None) -> None:
        """A new selection (other filters, another file, or the file started over); keep the cursor's record."""
        feed = self.source.feed
        stream = self.stream
        self._bound_feed = feed
        if feed is None:
            self.selection = None
            stream.set_rows(_NoRows())
            self._draw_bars()
            return
        self.selection = LineSelection(feed.index, self.kinds)
        self.selection.update()
        self._tail = None
        stream.set_rows(FeedRows(feed, self.selection, self.search))
        self._was_caught_up = feed.caught_up
        if stream.follow:
            if feed.caught_up:
                stream.cursor = len(self.selection) - 1  # following: the newest matching record
            else:
                self._show_tail()
        elif keep_line is not None and len(self.selection):
            stream.move_to(self.selection.position_of(keep_line))
        self._draw_bars()

    def _show_tail(self) -> None:
        """The end is wanted before the scan got there: show the last lines read back from the end (unfiltered
        only: a filter needs the summary of every line), their badges from each line alone."""
        feed = self.source.feed
        if feed is None or self.selection is None or self.selection.filtered or self.search or feed.caught_up:
            return
        tail = feed.index.read_tail()
        if tail is None:
            return
        self._tail = tail
        self.stream.set_rows(TailRows(tail))
        self.stream.cursor = len(tail) - 1

    def _leave_tail(self, *, first: bool = False) -> None:
        """Back to the whole file: at its end when following (the scan got there), else at its first line."""
        feed, tail = self.source.feed, self._tail
        self._tail = None
        if feed is None or self.selection is None or tail is None:
            return
        stream = self.stream
        cursor = min(stream.cursor, len(tail) - 1)
        stream.set_rows(FeedRows(feed, self.selection, self.search))
        if stream.follow:
            stream.cursor = stream.count - 1
        elif first or tail.generation != feed.index.generation or feed.index.scanned < tail.ends[cursor]:
            stream.cursor = 0
        else:  # the record under the cursor, at its line number now known
            stream.cursor = self.selection.position_of(feed.index.line_at_offset(tail.ends[cursor] - 1))

    def refresh_view(self, changed: set[str]) -> None:
        # another file (the first frame's report of the file bound at mount is none: rebuilding for it would undo
        # keys pressed before that frame)
        other_file = CHANGED_TRACE_FILE in changed and self.source.feed is not self._bound_feed
        if other_file or ("all" in changed and self.selection is None):
            self._rebuild(keep_line=None)
        elif self.selection is not None and (CHANGED_TRACES in changed or "all" in changed):
            generation = self.selection.generation
            self.selection.update()
            if generation != self.selection.generation:
                self._rebuild(keep_line=None)
            feed = self.source.feed
            caught_up = feed is not None and feed.caught_up
            if self._tail is not None and feed is not None:
                if caught_up or self._tail.generation != feed.index.generation:
                    self._leave_tail()
                elif self.stream.follow and feed.index.size > self._tail.size:
                    self._show_tail()  # a followed file grew: read its end again
            now = time.monotonic()
            if caught_up or now - self._synced_at >= SCAN_SYNC_S:
                self._synced_at = now
                self.stream.sync(hold=not caught_up)
            if caught_up and not self._was_caught_up and self.stream.follow and self._tail is None:
                self.stream.cursor = self.stream.count - 1  # the first scan is done: go to the end and follow
            self._was_caught_up = caught_up
            if feed is not None and self._summary_reached_screen(feed.index.summarized):
                self.stream.refresh()  # the summary pass (the final badges) reached rows on screen
        if self._pending_line is not None and self.selection is not None:
            line, self._pending_line = self._pending_line, None
            self.stream.move_to(self.selection.position_of(line))
        self._draw_bars()
        if "all" in changed:
            self.draw_tabs()

    def _summary_reached_screen(self, summarized: int) -> bool:
        """The summary pass went over lines on screen since the last look (redraw then, not every frame: while a
        big file is scanned, redrawing rows that did not change took a third of the interpreter from the scan)."""
        before, self._summarized_seen = self._summarized_seen, summarized
        selection = self.selection
        if summarized == before or selection is None or not len(selection):
            return summarized < before  # the file started over
        stream = self.stream
        top = min(int(stream.scroll_y), len(selection) - 1)
        bottom = min(top + max(1, stream.size.height), len(selection) - 1)
        return selection.line_at(bottom) >= before and selection.line_at(top) < summarized

    def show_line(self, line: int) -> None:
        """Put the cursor on trace line ``line`` (from another screen), clearing filters that hide it."""
        if self.selection is not None and line not in self.selection:
            self.kinds = frozenset()
            self._rebuild(keep_line=line)
        self._pending_line = line
        if self.is_mounted:
            self.refresh_view(set())

    def _filter_state(self, stream: TraceStream | None = None) -> FilterState:
        feed = self.source.feed
        keymap = self.phasef.keymap
        keys = {name: effective_key(a, keymap).split(",")[0] for name, a in FILTER_KEY_IDS.items()}
        stream = stream if stream is not None else self.stream
        if feed is None:
            return FilterState(active=self.kinds, keys=keys, follow=stream.follow, source="no trace yet")
        total = len(feed.index)
        shown = len(self.selection) if self.selection is not None else 0
        return FilterState(
            active=self.kinds,
            counts=feed.counts(),
            keys=keys,
            shown=len(self._tail) if self._tail is not None else shown,
            total=total,
            cursor=stream.cursor,
            summarized_pct=feed.summarized_pct,
            indexed_pct=feed.indexed_pct,
            search=self.search,
            search_note=self.search_note,
            follow=stream.follow,
            source=feed.display_name,
            tail=self._tail is not None,
        )

    # -- detail pane -----------------------------------------------------------------------------------------------
    @property
    def detail_open(self) -> bool:
        return self._detail is not None and self._detail.has_class("-open")

    def _detail_pane(self) -> RecordDetail:
        """The detail pane, mounted when first opened (the first screen has none: fewer widgets and CSS rules to
        apply before its first frame)."""
        if self._detail is None:
            from widgets.record_detail import RecordDetail  # (its module too: imported when first opened)

            self._detail = RecordDetail(id="detail")
            self.query_one("#trace-body", Vertical).mount(self._detail)
        return self._detail

    def _show_detail(self) -> None:
        line = self.current_line()
        feed = self.source.feed
        if line is None or feed is None or line == self._detail_line:
            return
        self._detail_line = line
        self._detail_pane().show(feed.record_view(line))

    @on(VirtualList.CursorMoved, "#stream")
    def _cursor_moved(self) -> None:
        if self.detail_open:
            self._show_detail()
        self._draw_bars()

    @on(VirtualList.Selected, "#stream")
    def _selected(self) -> None:
        self.action_toggle_detail()

    @on(TraceStream.FollowChanged)
    def _follow_changed(self, event: TraceStream.FollowChanged) -> None:
        if event.follow and self._tail is None:
            self._show_tail()  # End (or follow) before the scan reached the end
        elif not event.follow and self._tail is not None and self.stream.cursor == 0:
            self._leave_tail(first=True)  # Home: the first line of the file
        self._draw_bars()

    def action_toggle_detail(self) -> None:
        """Open or close the detail pane. Opening it pauses a followed stream: a record is opened to be read, and a
        pane redrawn with a new record every frame could not be (new records count on the "N new" marker meanwhile);
        closing it follows again."""
        detail = self._detail_pane()
        detail.toggle_class("-open")
        if detail.has_class("-open"):
            self._paused_by_detail = self.stream.follow
            self.stream.follow = False
        elif self._paused_by_detail:
            self._paused_by_detail = False
            self.stream.follow = True  # closing the pane resumes what opening it paused
        self._detail_line = None
        if detail.has_class("-open"):
            self._show_detail()

    def action_close_panes(self) -> None:
        search = self._search
        if search is not None and search.has_class("-open"):
            search.remove_class("-open")
            self.stream.focus()
        elif self.detail_open:
            self.action_toggle_detail()

    # -- follow, filters -------------------------------------------------------------------------------------------
    def action_toggle_follow(self) -> None:
        self.stream.action_toggle_follow()

    def action_toggle_filter(self, kind: str) -> None:
        self.kinds = self.kinds ^ {kind}
        self._rebuild(keep_line=self.current_line())

    def action_clear_filters(self) -> None:
        if self.kinds:
            self.kinds = frozenset()
            self._rebuild(keep_line=self.current_line())

    def action_next_file(self) -> None:
        files = self.source.trace_files()
        feed = self.source.feed
        if len(files) < 2 or feed is None:
            self.notify("only one trace file", timeout=2)
            return
        position = files.index(feed.path) if feed.path in files else -1
        self.source.select_trace(files[(position + 1) % len(files)])

    # -- chains ----------------------------------------------------------------------------------------------------
    def action_jump_to_chain(self) -> None:
        line = self.current_line()
        feed = self.source.feed
        if line is None or feed is None:
            return
        chain = feed.index.chain_of_line(line)
        if chain is None:
            if line >= feed.index.summarized:
                self.notify("this record is not scanned yet; try again in a moment", timeout=3)
            else:
                self.notify("this record is not part of a recovery chain", timeout=3)
            return
        lines = feed.index.chain_lines(chain)
        position = list(lines).index(line) if line in lines else 0
        self.phasef.open_chain(chain, position)
