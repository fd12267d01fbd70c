"""The recovery chains of a trace feed as the Chains screen shows them: a row per chain for the list, and each
tick of a chain for the stepper (records parsed on demand, rows cached)."""

from __future__ import annotations

from array import array

from phasef_tui.trace_feed import ROW_CACHE, TraceFeed, _str, _tick_fields, schema_problems
from pipeline.traces.index import LineError, LRUCache
from widgets.chain_list import ChainRow
from widgets.chain_stepper import ChainStep


class FeedChains:
    """``ChainRows`` for the chain list, and the ticks of each chain for the stepper."""

    def __init__(self, feed: TraceFeed) -> None:
        self.feed = feed
        self._rows: LRUCache[tuple[int, int, int], ChainRow] = LRUCache(ROW_CACHE)

    def __len__(self) -> int:
        return self.feed.index.chain_count

    def chain_name(self, chain: int) -> str:
        return self.feed.index.chain_name(chain).partition("\x1f")[2]

    def lines(self, chain: int) -> array[int]:
        return self.feed.index.chain_lines(chain)

    def chain_row(self, pos: int) -> ChainRow:
        index = self.feed.index
        lines = index.chain_lines(pos)
        key = (index.generation, pos, len(lines))
        cached = self._rows.get(key)
        if cached is not None:
            return cached
        episode, _, name = index.chain_name(pos).partition("\x1f")
        records = [r for r in (index.record(i) for i in lines) if isinstance(r, dict)]
        first_error = next((_str(r.get("error_class")) for r in records if r.get("error_class")), None)
        end_role = _str(records[-1].get("chain_role")) if records else None
        mechanisms = tuple(dict.fromkeys(str(r["recovery"]) for r in records if r.get("recovery")))
        row = ChainRow(
            name=name,
            episode=episode or None,
            ticks=len(lines),
            first_error=first_error,
            end_role=end_role if end_role in ("recovered", "death") else None,
            mechanisms=mechanisms,
        )
        self._rows.put(key, row)
        return row

    def chain_of_line(self, line: int) -> int | None:
        return self.feed.index.chain_of_line(line)

    def step(self, chain: int, position: int) -> ChainStep:
        index = self.feed.index
        lines = index.chain_lines(chain)
        position = max(0, min(position, len(lines) - 1))
        line = lines[position]
        rec = index.record(line)
        name = self.chain_name(chain)
        if isinstance(rec, LineError):
            return ChainStep(chain=name, position=position, length=len(lines), line=line, problems=(str(rec),))
        context = rec.get("context")
        action = rec.get("action")
        return ChainStep(
            chain=name,
            position=position,
            length=len(lines),
            line=line,
            **_tick_fields(rec),
            role=_str(rec.get("chain_role")),
            trap=_str(rec.get("trap")),
            context=[m for m in context if isinstance(m, dict)] if isinstance(context, list) else None,
            raw_output=_str(rec.get("raw_output")),
            action=action if isinstance(action, dict) else None,
            schema_error=_str(rec.get("schema_error")),
            observation=_str(rec.get("observation")),
            problems=schema_problems(rec),
        )
