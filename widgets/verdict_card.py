"""An auditor's verdict, the evidence a gate is bound to, and the decision that was signed."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from widgets.session_view import CriterionView, EvidenceView, GateView, VerdictView
from widgets.theme import themed

VERDICT_STYLES = {
    "GO": "good.b",
    "GO-OVERRIDE": "warn.b",
    "NO-GO": "bad.b",
    "INVALID": "bad.b",
    "BLOCKED": "warn.b",
}


def short_hash(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def render_verdict(v: VerdictView) -> RenderableType:
    head = Text()
    head.append(v.auditor, style="bold")
    if v.role:
        head.append(f" ({v.role})", style="dim")
    head.append("  ")
    verdict = v.verdict or "no answer"
    head.append(verdict, style=themed(VERDICT_STYLES.get(verdict.upper(), "dim italic")))
    if v.model:
        head.append(f"  {v.model}", style="dim")
    parts: list[RenderableType] = [head]
    if v.judged_sha256:
        parts.append(Text(f"judged {short_hash(v.judged_sha256)}", style="dim"))
    if v.error:
        parts.append(Text(v.error, style=themed("bad.b")))
    for blocker in v.blockers:
        parts.append(Text.assemble(("  ■ ", themed("bad.b")), (blocker, themed("bad"))))
    for finding in v.findings:
        parts.append(Text.assemble(("  • ", themed("warn")), finding))
    if not v.blockers and not v.findings and v.verdict:
        parts.append(Text("  no findings", style="dim"))
    return Group(*parts)


def render_evidence(items: tuple[EvidenceView, ...], bundle_sha: str | None) -> RenderableType:
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column(no_wrap=True, width=12)
    if not items:
        table.add_row(Text("no evidence listed", style=themed("bad.b")), "")
    for item in items:
        name = Text(item.path, style="bold")
        if item.name not in (item.path, item.path.rsplit("/", 1)[-1]):
            name.append(f" ({item.name})", style="dim")
        sha = Text(short_hash(item.sha256), style=themed("info") if item.sha256 else themed("bad.b"))
        if item.changed:  # the hash is the recorded one; the file there now is another
            name.append("  ⚠ changed since recorded", style=themed("bad.b"))
            sha.stylize(themed("bad.b strike"))
        table.add_row(name, sha)
    if bundle_sha:
        table.add_row(Text("bundle", style="dim"), Text(short_hash(bundle_sha), style=themed("info.b")))
    return table


def render_decision(gate: GateView) -> Text:
    text = _decision(gate)
    for refusal in gate.refusals:
        text.append(f"\nrefused: {refusal}", style=themed("warn"))
    return text


def _decision(gate: GateView) -> Text:
    text = Text()
    if gate.state == "waiting":
        text.append("waiting for the operator's decision", style=themed("attn.b"))
        if gate.deadline:
            text.append(f" (until {gate.deadline})", style="dim")
        return text
    if gate.state == "timed_out":
        text.append("NO-GO: no decision before the gate's timeout", style=themed("bad.b"))
        return text
    decision = (gate.decision or "?").upper()
    if gate.final and gate.override and decision == "GO":
        decision = "GO-OVERRIDE"
    text.append(decision, style=themed(VERDICT_STYLES.get(decision, "bold")))
    text.append(" signed by ")
    text.append(gate.operator or "?", style="bold")
    if gate.key_fingerprint:
        text.append(f" [{gate.key_fingerprint[:16]}]", style="dim")
    if gate.decided_at:
        text.append(f" at {gate.decided_at}", style="dim")
    if gate.override and gate.final:
        unmet = ", ".join(c.label for c in gate.unmet_criteria) or "the audit"
        text.append(f"  OVERRIDE of unmet pass criteria: {unmet}", style=themed("warn.b"))
    elif gate.override:
        text.append("  OVERRIDE of the audit", style=themed("warn.b"))
    if gate.reason:
        text.append(f"\nreason: {gate.reason}")
    return text


def render_criteria(criteria: tuple[CriterionView, ...], *, evidence: bool = True) -> Text:
    """The plan's pass criteria: a mark, the criterion, and (dim) the evidence it was judged on."""
    text = Text()
    for i, c in enumerate(criteria):
        if i:
            text.append("\n")
        text.append("✓ " if c.met else "✗ ", style=themed("good.b") if c.met else themed("bad.b"))
        text.append(c.label, style="bold" if c.met else themed("bad.b"))
        if evidence and c.evidence:
            text.append(f"\n    {c.evidence}", style="dim")
    if not criteria:
        text.append("pass criteria not judged", style="dim")
    return text


def render_final_report(
    final_decision: str | None, criteria: tuple[CriterionView, ...], gates: tuple[GateView, ...]
) -> Text:
    """The opening of the final report: the decision and its kind, the criteria, and every override signed."""
    text = Text()
    text.append("final decision ", style="dim")
    word = final_decision or "pending"
    text.append(word, style=themed(VERDICT_STYLES.get(word, "dim")))
    kinds = {
        "GO": "every pass criterion met",
        "GO-OVERRIDE": "operator override: a pass criterion is not met",
        "NO-GO": "no-go",
    }
    text.append(f"  {kinds.get(word, 'the final gate has not been signed')}\n", style="dim")
    text.append_text(render_criteria(criteria, evidence=False))
    for gate in gates:
        if gate.override:
            what = ", ".join(c.label for c in gate.unmet_criteria) if gate.final else f"audit {gate.audit_verdict}"
            text.append(f"\nOVERRIDE {gate.id}", style=themed("warn.b"))
            text.append(f" by {gate.operator} over {what}: {gate.reason}")
    return text


class CriteriaCard(Static):
    def show(self, criteria: tuple[CriterionView, ...]) -> None:
        self.update(render_criteria(criteria))


class VerdictCard(Static):
    def show(self, verdict: VerdictView) -> None:
        self.update(render_verdict(verdict))


class EvidenceList(Static):
    def show(self, items: tuple[EvidenceView, ...], bundle_sha: str | None) -> None:
        self.update(render_evidence(items, bundle_sha))


class DecisionLine(Static):
    def show(self, gate: GateView) -> None:
        self.update(render_decision(gate))
