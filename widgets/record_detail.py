"""The whole record under the cursor, pretty-printed, with the problems found in it named by field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.text import Text

from widgets.text_pane import TextPane
from widgets.theme import themed


@dataclass(frozen=True)
class RecordView:
    """A record as the detail pane shows it: where it is, its data (or raw text when it is not JSON), problems."""

    file: str
    line: int  # 0-based
    data: dict[str, Any] | None
    raw: str = ""
    problems: tuple[str, ...] = field(default_factory=tuple)


def render_record(view: RecordView) -> RenderableType:
    head = Text(f"{view.file}:{view.line + 1}", style="bold")
    parts: list[RenderableType] = [head]
    for problem in view.problems:
        parts.append(Text(problem, style=themed("bad.b")))
    if view.data is not None:
        parts.append(JSON.from_data(view.data, indent=2, ensure_ascii=False, sort_keys=False))
    else:
        parts.append(Text(view.raw, style=themed("bad")))
    return Group(*parts)


class RecordDetail(TextPane):
    """Scrollable pretty-printed record."""

    BODY_ID = "record-detail-body"

    def show(self, view: RecordView | None) -> None:
        self.show_text(render_record(view) if view else Text("no record selected", style="dim"))
