"""The few numbers an operator wants at a glance (as they become known), and the gates waiting for them."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from widgets.session_view import GateView, MetricView
from widgets.theme import themed


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
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column(justify="right", no_wrap=True)
    for metric in metrics:
        table.add_row(Text(metric.name, style="dim"), Text(metric.value, style="bold"))
    if not metrics:
        table.add_row(Text("metrics appear as steps finish", style="dim"), "")
    parts.append(table)
    return Group(*parts)


class Headline(Static):
    def show(
        self, state: str, final_decision: str | None, gates: tuple[GateView, ...], metrics: tuple[MetricView, ...]
    ) -> None:
        self.update(render_headline(state, final_decision, gates, metrics))
