"""The few numbers an operator wants at a glance (as they become known), and the gates waiting for them."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.text import Text
from textual.widgets import Static

from widgets.session_view import GateView, MetricView
from widgets.theme import palette, themed


def render_headline(
    state: str, final_decision: str | None, gates: tuple[GateView, ...], metrics: tuple[MetricView, ...]
) -> RenderableType:
    head = Text()
    head.append("run ", style="dim")
    head.append(state, style="bold")
    if final_decision:
        head.append("  final ", style="dim")
        styles = {"GO": "good.b", "GO-OVERRIDE": "warn.b"}
        head.append(final_decision, style=themed(styles.get(final_decision, "bad.b")))
    parts: list[RenderableType] = [head]
    waiting = [g for g in gates if g.state == "waiting"]
    if waiting:
        for gate in waiting:
            line = Text("◆ ", style=themed("attn.b"))
            line.append(gate.id, style="bold")
            if gate.title and gate.title != gate.id:
                line.append(f" {gate.title}")
            line.append(" waits for sign-off", style=themed("attn"))
            if gate.audit_verdict:
                line.append(f" (audit {gate.audit_verdict})", style="dim")
            parts.append(line)
    else:
        parts.append(Text("no gate waiting", style="dim"))
    for gate in gates:  # an override stays in sight for the rest of the session
        if gate.override and gate.state == "decided":
            line = Text("▲ ", style=themed("warn.b"))
            line.append(f"{gate.id} GO by {gate.operator}: ", style="bold")
            if gate.final:
                unmet = ", ".join(c.criterion for c in gate.unmet_criteria) or "criteria"
                line.append(f"OVERRIDE of unmet pass criteria ({unmet})", style=themed("warn"))
            else:
                line.append(f"OVERRIDE of the audit ({gate.audit_verdict})", style=themed("warn"))
            parts.append(line)
    parts.append(MetricRows([(Text(m.name, style="dim"), Text(m.value, style="bold")) for m in metrics]))
    return Group(*parts)


class MetricRows:
    """Metric names (left, cut with an ellipsis) and values (right) over the whole width, one blank between: as a
    Rich grid table lays them out (tested against one), without its layout code (see ``render_stage_board``)."""

    def __init__(self, rows: list[tuple[Text, Text]]) -> None:
        self.rows = rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        rows = self.rows or [(Text("metrics appear as steps finish", style="dim"), Text())]
        value_width = max(value.cell_len for _, value in rows)
        name_width = max(1, width - value_width - 1)
        if not value_width:  # (no values at all: as in Rich's table, the names' column is as wide as its longest)
            name_width = min(name_width, max(name.cell_len for name, _ in rows))
        lines = []
        for name, value in rows:
            name, value = name.copy(), value.copy()
            name.truncate(name_width, overflow="ellipsis", pad=True)
            if not value_width:
                lines.append(name)
                continue
            value.rstrip()  # (as Rich justifies to the right)
            value.align("right", value_width)
            lines.append(Text.assemble(name, " ", value, end=""))
        yield Text("\n", no_wrap=True, overflow="ellipsis").join(lines)


class Headline(Static):
    _shown: tuple[object, ...] | None = None

    def show(
        self, state: str, final_decision: str | None, gates: tuple[GateView, ...], metrics: tuple[MetricView, ...]
    ) -> None:
        """(Nothing is done when nothing changed, the theme included: the dashboard calls this each second while a
        clock runs.)"""
        shown = (state, final_decision, gates, metrics, palette())
        if shown != self._shown:
            self._shown = shown
            self.update(render_headline(state, final_decision, gates, metrics))
