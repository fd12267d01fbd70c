"""The replay timeline: where in the journal the screens are, its landmarks, and the play state.

``◀ 123/4567`` position, a bar of the whole journal with its landmarks (``✗`` failure, ``◆`` gate, ``|`` stage
start, ``☠`` death tick) and the cursor ``●``, the event at the cursor, the landmark kind the jump keys use, the play
speed, and a warning when files the journal recorded have changed since.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from widgets.theme import themed

MARK_GLYPHS = (("stage", "|", "info"), ("gate", "◆", "attn"), ("death", "☠", "bad.b"), ("failure", "✗", "bad"))


def render_bar(info: dict[str, Any], width: int) -> Text:
    count = int(info.get("count") or 0)
    cells = [("─", "dim")] * max(1, width)
    if count > 1:
        for kind, glyph, style in MARK_GLYPHS:
            for index in info["marks"].get(kind, []):
                cells[min(width - 1, index * width // count)] = (glyph, themed(style))
        cursor = min(width - 1, int(info["position"]) * width // count)
        cells[cursor] = ("●", themed("warn.b"))
    text = Text()
    for glyph, style in cells:
        text.append(glyph, style=style)
    return text


def render_timeline(info: dict[str, Any], width: int) -> Text:
    if info.get("following"):
        state = Text(" LIVE ", style=themed("good.b reverse"))
    elif info.get("playing"):
        state = Text(f" ▶ {info['speed']:g}x ", style=themed("info.b reverse"))
    else:
        state = Text(" ⏸ REPLAY ", style=themed("warn.b reverse"))
    count = int(info.get("count") or 0)
    where = Text(f" {int(info['position']) + 1 if count else 0}/{count} ", style="bold")
    tail = Text(no_wrap=True, overflow="ellipsis")
    tail.append(f" {info.get('event', '')}")
    tail.append(f" · jump: {info.get('kind', 'any')}", style="dim")
    if not info.get("playing") and not info.get("following"):
        tail.append(f" · {info['speed']:g}x", style="dim")
    changed = info.get("changed")
    if changed:
        names = list(dict.fromkeys(str(c.path).rsplit("/", 1)[-1] for c in changed))
        shown = ", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else "")
        tail.append(f" · ⚠ changed since recorded: {shown}", style=themed("bad.b"))
    fixed = state.cell_len + where.cell_len
    bar_width = max(10, min(60, (width - fixed) // 3))
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append_text(state)
    line.append_text(where)
    line.append_text(render_bar(info, bar_width))
    line.append_text(tail)
    return line


class TimelineBar(Static):
    """Redrawn by ``show``; draws to its own width."""

    DEFAULT_CSS = """
    TimelineBar { height: 1; background: $boost; }
    """

    _info: dict[str, Any] | None = None

    def show(self, info: dict[str, Any]) -> None:
        self._info = info
        self.refresh()

    def render(self) -> Text:
        if self._info is None:
            return Text("")
        return render_timeline(self._info, self.size.width or 80)
