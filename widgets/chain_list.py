"""The catalogue of recovery chains of a trace, one line each, for picking the chain to step through."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from rich.text import Text

from widgets.chain_stepper import ROLE_STYLES
from widgets.theme import themed
from widgets.virtual_list import VirtualList


@dataclass(frozen=True)
class ChainRow:
    """What the catalogue knows of one chain."""

    name: str
    episode: str | None
    ticks: int
    first_error: str | None = None
    end_role: str | None = None  # role of the chain's last tick: recovered, death, or still open
    mechanisms: tuple[str, ...] = ()


class ChainRows(Protocol):
    def __len__(self) -> int: ...

    def chain_row(self, pos: int) -> ChainRow: ...


def format_chain_row(row: ChainRow, number_width: int, pos: int) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{pos + 1:>{number_width}} ", style="dim")
    text.append(f"{row.name[:8]:<8} ", style="bold")
    text.append(f"{(row.episode or '-')[-10:]:<10} ", style="dim")
    text.append(f"{row.ticks:>3}t ", style="dim")
    end = row.end_role or "open"
    text.append(f"{end:<9} ", style=themed(ROLE_STYLES.get(end, "dim")))
    text.append(f"{(row.first_error or '')[:13]:<13} ", style=themed("warn"))
    text.append(",".join(row.mechanisms), style=themed("good"))
    return text


class ChainList(VirtualList):
    """Chains in order of first appearance; Enter or a cursor move picks one."""

    empty_text = "no recovery chains (yet)"

    def __init__(self, rows: ChainRows, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows = rows

    def row_key(self, pos: int) -> Hashable:
        return (pos, self.rows.chain_row(pos), len(str(self.count)))

    def render_row(self, pos: int, width: int) -> Text:
        return format_chain_row(self.rows.chain_row(pos), max(3, len(str(self.count))), pos)

    def sync(self) -> None:
        count = len(self.rows)
        if count != self.count:
            self.set_count(count)
