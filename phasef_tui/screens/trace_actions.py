"""What the Traces screen does with its records besides showing them: search (find next/previous in a thread), copy
the record under the cursor, export the filtered slice. ``TracesScreen`` builds on it."""

from __future__ import annotations

from textual import on, work
from textual.widgets import Input
from textual.worker import get_current_worker

from phasef_tui.screens.base import PhasefScreen
from phasef_tui.trace_feed import FeedRows, LineSelection
from pipeline.traces.index import TailLines
from widgets.filter_bar import FilterBar, FilterState, StreamStatus
from widgets.trace_stream import TraceStream


class TraceActions(PhasefScreen):
    """The stream's search, copy and export; the screen gives the selection, the filters and the bars' state."""

    kinds: frozenset[str]
    selection: LineSelection | None
    search: str | None
    search_note: str | None
    _tail: TailLines | None
    """The last lines read back from the end while the scan has not got there (None: the whole file)."""
    _search: Input | None
    """The search line, once first opened."""

    @property
    def stream(self) -> TraceStream:
        return self.query_one("#stream", TraceStream)

    def current_line(self) -> int | None:
        if self.selection is None or not len(self.selection) or self._tail is not None:
            return None  # (tail rows have no line number until the scan gets there)
        return self.selection.line_at(self.stream.cursor)

    def _filter_state(self, stream: TraceStream | None = None) -> FilterState:
        raise NotImplementedError

    def _draw_bars(self) -> None:
        state = self._filter_state()
        self.query_one("#filters", FilterBar).show(state)
        self.query_one("#stream-status", StreamStatus).show(state)

    # -- search ----------------------------------------------------------------------------------------------------
    def action_search(self) -> None:
        search = self._search
        if search is None:  # mounted when first opened, above the status line (the first screen has none)
            search = self._search = Input(
                self.search or "", placeholder="search (Enter: find, Esc: cancel)", id="search", compact=True
            )
            self.mount(search, before="#stream-status")
        else:
            search.value = self.search or ""
        search.add_class("-open")
        search.focus()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.input.remove_class("-open")
        self.stream.focus()
        query = event.value.strip()
        self.search = query or None
        self.search_note = None
        if self.selection is not None and self.source.feed is not None:
            self._tail = None  # a search goes over the whole file
            self.stream.set_rows(FeedRows(self.source.feed, self.selection, self.search))
            self.stream.sync()
        if self.search:
            self.action_find(True)
        self._draw_bars()

    def action_find(self, forward: bool) -> None:
        line = self.current_line()
        if not self.search or self.selection is None or self.source.feed is None:
            if not self.search:
                self.action_search()
            return
        start = (line if line is not None else -1) + (1 if forward else -1)
        self.search_note = "searching…"
        self._draw_bars()
        self._find(self.search, start, forward)

    @work(thread=True, exclusive=True, group="search", exit_on_error=False)
    def _find(self, query: str, start: int, forward: bool) -> None:
        feed = self.source.feed
        selection = self.selection
        if feed is None or selection is None:
            return
        worker = get_current_worker()
        accept = None if not selection.filtered else selection.__contains__
        found = feed.index.find(query, start, forward=forward, accept=accept, cancelled=lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.app.call_from_thread(self._found, query, found, forward)

    def _found(self, query: str, line: int | None, forward: bool) -> None:
        if query != self.search or self.selection is None:
            return
        if line is None:
            self.search_note = "no more matches " + ("below" if forward else "above")
        else:
            self.search_note = f"line {line + 1:,}"
            self.stream.move_to(self.selection.position_of(line))
        self._draw_bars()

    # -- copy and export ---------------------------------------------------------------------------------------------
    def action_copy(self) -> None:
        """The record under the cursor, as indented JSON, to the clipboard (OSC 52: works over SSH)."""
        from phasef_tui.exports import record_text

        feed = self.source.feed
        line = self.current_line()
        if feed is None or line is None:
            self.notify("no record to copy", timeout=3)
            return
        raw = feed.index.line(line).decode("utf-8", "replace")
        text = record_text(feed.index.record(line), raw)
        self.app.copy_to_clipboard(text)
        self.notify(f"line {line + 1} copied ({len(text):,} chars)", title="clipboard", timeout=3)

    def action_export(self, fmt: str) -> None:
        """The records the filters select (all of them without a filter), to a Markdown or JSON file."""
        feed, selection = self.source.feed, self.selection
        if feed is None or selection is None or not len(selection):
            self.notify("no records to export", timeout=3)
            return
        from phasef_tui.exports import SLICE_LIMIT

        count = min(len(selection), SLICE_LIMIT)
        lines = [selection.line_at(i) for i in range(count)]
        self._export_slice(fmt, feed.display_name, sorted(self.kinds), lines, len(selection))

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def _export_slice(self, fmt: str, trace: str, kinds: list[str], lines: list[int], total: int) -> None:
        from phasef_tui.exports import export_folder, render, slice_doc, slice_markdown, write_export

        feed = self.source.feed
        if feed is None:
            return
        records = [feed.index.record(line) for line in lines]
        doc = slice_doc(trace, kinds, lines, records, total)
        stem = "trace-slice-" + ("-".join(kinds) if kinds else "all")
        try:
            path = write_export(export_folder(self.source), stem, fmt, render(doc, fmt, slice_markdown))
        except OSError as exc:
            self.app.call_from_thread(self.notify, str(exc), title="not exported", severity="error", timeout=8)
            return
        self.app.call_from_thread(self.notify, f"{len(lines):,} records to {path}", title="exported", timeout=6)
