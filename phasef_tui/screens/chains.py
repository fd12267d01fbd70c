"""Recovery chains: pick a chain, step through it tick by tick, jump between chains and back to the trace."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal

from phasef_tui.data_source import CHANGED_TRACES
from phasef_tui.feed_chains import FeedChains
from phasef_tui.keys import bindings
from phasef_tui.screens.base import PhasefScreen
from widgets.chain_list import ChainList, ChainRow
from widgets.chain_stepper import ChainStepper
from widgets.status_line import StatusLine
from widgets.virtual_list import VirtualList


class _NoChains:
    def __len__(self) -> int:
        return 0

    def chain_row(self, pos: int) -> ChainRow:
        raise IndexError(pos)


class ChainsScreen(PhasefScreen):
    SCREEN_NAME = "Chains"
    BINDINGS = bindings("chains")

    def __init__(self) -> None:
        super().__init__()
        self.chains: FeedChains | None = None
        self.chain = 0
        self.position = 0
        self._shown: tuple[int, int, int, int] | None = None
        self._request: tuple[int, int] | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        with Horizontal(id="chains-body"):
            yield ChainList(_NoChains(), id="chain-list")
            yield ChainStepper(id="stepper")
        yield StatusLine(id="chain-status")
        yield from self.compose_footer()

    @property
    def chain_list(self) -> ChainList:
        return self.query_one("#chain-list", ChainList)

    def on_mount(self) -> None:
        self.chain_list.focus()
        if self.chains is None:  # (a resume may have come first and bound it already)
            self._bind_feed()

    def _bind_feed(self) -> None:
        feed = self.source.feed
        self.chains = FeedChains(feed) if feed is not None else None
        self.chain_list.rows = self.chains if self.chains is not None else _NoChains()
        self.chain_list.set_count(0)
        self.chain_list.sync()
        self.chain = 0
        self.position = 0
        self._shown = None

    def select(self, chain: int, position: int) -> None:
        """Show tick ``position`` of chain number ``chain`` (a jump from the Traces screen)."""
        self._request = (chain, position)
        if self.is_mounted:
            self.refresh_view(set())

    def refresh_view(self, changed: set[str]) -> None:
        # (another file: another feed; the first frame's report of the file bound at mount changes nothing, and
        # binding again would undo keys pressed before it)
        if self.chains is None or self.chains.feed is not self.source.feed:
            self._bind_feed()
        if CHANGED_TRACES in changed or "all" in changed:
            self.chain_list.sync()
        if self._request is not None and self.chains is not None and self._request[0] < len(self.chains):
            self.chain, self.position = self._request
            self._request = None
            self.chain_list.cursor = self.chain
        self._draw()
        if "all" in changed:
            self.draw_tabs()

    def _draw(self) -> None:
        stepper = self.query_one("#stepper", ChainStepper)
        status = self.query_one("#chain-status", StatusLine)
        chains = self.chains
        if chains is None or not len(chains):
            if self._shown != (-1, -1, -1, -1):
                stepper.show(None)
                self._shown = (-1, -1, -1, -1)
            status.show_text(Text("no recovery chains" + ("" if chains is None else " (yet)"), style="dim"))
            return
        self.chain = max(0, min(self.chain, len(chains) - 1))
        length = len(chains.lines(self.chain))
        self.position = max(0, min(self.position, length - 1))
        key = (chains.feed.index.generation, self.chain, self.position, length)
        if key != self._shown:
            self._shown = key
            stepper.show(chains.step(self.chain, self.position))
        status.show_text(Text(f"chain {self.chain + 1:,}/{len(chains):,} · tick {self.position + 1}/{length}", "bold"))

    @on(VirtualList.CursorMoved, "#chain-list")
    def _chain_moved(self) -> None:
        pos = self.chain_list.cursor  # (not the message's: messages arrive late, the cursor is the truth)
        if pos != self.chain:
            self.chain = pos
            self.position = 0
            self._draw()

    @on(VirtualList.Selected, "#chain-list")
    def _chain_selected(self) -> None:
        self.query_one("#stepper", ChainStepper).focus()

    def action_step(self, delta: int) -> None:
        self.position += delta
        self._draw()

    def action_first_tick(self) -> None:
        self.position = 0
        self._draw()

    def action_last_tick(self) -> None:
        if self.chains is not None and len(self.chains):
            self.position = len(self.chains.lines(self.chain)) - 1
            self._draw()

    def action_chain(self, delta: int) -> None:
        self.chain_list.cursor = self.chain + delta

    def action_scroll_step(self, direction: int) -> None:
        stepper = self.query_one("#stepper", ChainStepper)
        if direction > 0:
            stepper.scroll_page_down(animate=False)
        else:
            stepper.scroll_page_up(animate=False)

    def action_toggle_list(self) -> None:
        self.chain_list.toggle_class("-hidden")

    def action_to_trace(self) -> None:
        if self.chains is None or not len(self.chains):
            return
        lines = self.chains.lines(self.chain)
        if lines:
            self.phasef.open_trace_line(lines[min(self.position, len(lines) - 1)])

    # -- copy and export ---------------------------------------------------------------------------------------------
    def _chain_doc(self) -> dict[str, object] | None:
        from phasef_tui.exports import chain_doc

        chains = self.chains
        if chains is None or not len(chains):
            self.notify("no recovery chain", timeout=3)
            return None
        lines = list(chains.lines(self.chain))
        records = [chains.feed.index.record(line) for line in lines]
        return chain_doc(chains.feed.display_name, chains.chain_name(self.chain), lines, records)

    def action_copy(self) -> None:
        """The whole chain, as Markdown, to the clipboard (OSC 52)."""
        from phasef_tui.exports import chain_markdown

        doc = self._chain_doc()
        if doc is not None:
            text = chain_markdown(doc)
            self.app.copy_to_clipboard(text)
            self.notify(f"chain {doc['chain']} copied ({doc['ticks']} ticks)", title="clipboard", timeout=3)

    def action_export(self, fmt: str) -> None:
        from phasef_tui.exports import chain_markdown, export_folder, render, write_export

        doc = self._chain_doc()
        if doc is None:
            return
        try:
            path = write_export(
                export_folder(self.source), f"chain-{doc['chain']}", fmt, render(doc, fmt, chain_markdown)
            )
        except OSError as exc:
            self.notify(str(exc), title="not exported", severity="error", timeout=8)
            return
        self.notify(f"chain {doc['chain']} to {path}", title="exported", timeout=6)
