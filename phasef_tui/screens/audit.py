"""Audit: the auditors' verdicts, findings and blockers, the evidence with hashes, and the signed decision.

Approve (GO) or reject (NO-GO) asks for a reason, then goes to the supervisor through the control socket in a
worker thread; the result comes back from the journal (who signed, when, with which key), not from this screen.
At the final gate the plan's pass criteria are shown; a GO while one is not met asks a second confirmation that
names each unmet criterion, and is signed as an override (the run ends GO-OVERRIDE, never GO).
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from phasef_tui.data_source import ApprovalError
from phasef_tui.keys import bindings
from phasef_tui.screens.base import PhasefScreen
from phasef_tui.screens.override import OverrideDialog
from phasef_tui.screens.reason import ReasonDialog
from widgets.session_view import GateView
from widgets.theme import themed
from widgets.verdict_card import VERDICT_STYLES, CriteriaCard, DecisionLine, EvidenceList, VerdictCard


def render_gate_header(gate: GateView, position: int, total: int) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"gate {gate.id}", style="bold")
    text.append(f" ({position + 1}/{total})", style="dim")
    text.append(f"  {gate.state}", style=themed("attn.b") if gate.state == "waiting" else "")
    if gate.final:
        text.append("  final gate", style="bold")
    text.append("  audit ", style="dim")
    if gate.audit_verdict:
        text.append(gate.audit_verdict, style=themed(VERDICT_STYLES.get(gate.audit_verdict, "bold")))
    else:
        text.append("none bound", style="dim")
    if gate.prompt:
        text.append(f"\n{gate.prompt}")
    return text


class AuditScreen(PhasefScreen):
    SCREEN_NAME = "Audit"
    FOCUS = "audit-body"
    BINDINGS = bindings("audit")

    def __init__(self) -> None:
        super().__init__()
        self.gate_id: str | None = None
        self._shown: object = None

    def compose(self) -> ComposeResult:
        yield from self.compose_tabs()
        with VerticalScroll(id="audit-body"):
            yield Static(id="gate-header")
            yield CriteriaCard(id="criteria")
            yield Vertical(id="verdicts")
            yield EvidenceList(id="evidence")
            yield DecisionLine(id="decision")
        yield from self.compose_footer()

    def _gates(self) -> tuple[GateView, ...]:
        view = self.source.session_view(self.phasef.clock())
        return view.gates if view is not None else ()

    def current_gate(self) -> GateView | None:
        """The gate the operator chose (``select_gate``, the next/prev keys), else the first waiting gate, else the
        last one. Until the operator chooses, the choice is remade at every frame: a screen opened while the journal
        is still being replayed moves on to the gate that waits once it is known, instead of staying on an earlier,
        already decided gate."""
        gates = self._gates()
        if not gates:
            return None
        for gate in gates:
            if gate.id == self.gate_id:
                return gate
        waiting = [g for g in gates if g.state == "waiting"]
        return waiting[0] if waiting else gates[-1]

    def select_gate(self, gate_id: str) -> None:
        self.gate_id = gate_id
        if self.is_mounted:
            self.refresh_view(set())

    def refresh_view(self, changed: set[str]) -> None:
        gates = self._gates()
        gate = self.current_gate()
        if gate == self._shown and "all" not in changed:
            return
        self._shown = gate
        header = self.query_one("#gate-header", Static)
        verdicts = self.query_one("#verdicts", Vertical)
        verdicts.remove_children()
        if gate is None:
            header.update(Text("no gate has opened yet", style="dim"))
            self.query_one("#evidence", EvidenceList).display = False
            self.query_one("#criteria", CriteriaCard).display = False
            self.query_one("#decision", DecisionLine).display = False
            return
        self.query_one("#evidence", EvidenceList).display = True
        self.query_one("#decision", DecisionLine).display = True
        header.update(render_gate_header(gate, gates.index(gate), len(gates)))
        criteria = self.query_one("#criteria", CriteriaCard)
        criteria.display = gate.final
        if gate.final:
            met = sum(c.met for c in gate.criteria)
            criteria.border_title = f"pass criteria · {met}/{len(gate.criteria)} met"
            criteria.show(gate.criteria)
        cards = []
        for verdict in gate.verdicts:
            card = VerdictCard(classes="verdict-card")
            cards.append((card, verdict))
        verdicts.mount_all([c for c, _ in cards])
        for card, verdict in cards:
            card.show(verdict)
        if not gate.verdicts:
            note = Static(Text("no auditor verdicts bound to this gate", style="dim"), classes="verdict-card")
            verdicts.mount(note)
        evidence = self.query_one("#evidence", EvidenceList)
        count = len(gate.evidence)
        evidence.border_title = f"evidence · {count} item{'' if count == 1 else 's'} · sha256"
        evidence.show(gate.evidence, gate.evidence_sha256)
        self.query_one("#decision", DecisionLine).show(gate)
        if "all" in changed or "session" in changed:
            self.draw_tabs()

    def action_gate(self, delta: int) -> None:
        gates = self._gates()
        gate = self.current_gate()
        if gate is None:
            return
        self.gate_id = gates[(gates.index(gate) + delta) % len(gates)].id
        self.refresh_view(set())

    def action_decide(self, decision: str) -> None:
        gate = self.current_gate()
        if gate is None:
            self.notify("no gate to decide", timeout=3)
            return
        if gate.state != "waiting":
            self.notify(f"gate {gate.id} is not waiting ({gate.state})", severity="warning", timeout=4)
            return
        word = "APPROVE (GO)" if decision == "go" else "REJECT (NO-GO)"
        override = decision == "go" and gate.audit_verdict not in (None, "GO")
        unmet = gate.unmet_criteria if decision == "go" and gate.final else ()
        title = f"{word} gate {gate.id} as {self.source.operator}"
        if override:
            title += f"\nthe audit says {gate.audit_verdict}: this GO overrides it"
        if unmet:
            title += f"\n{len(unmet)} pass criteri{'on' if len(unmet) == 1 else 'a'} not met: the run ends GO-OVERRIDE"
        dialog = ReasonDialog(title, required=True, blink=self.phasef.blink)

        def signed(reason: str | None) -> None:
            if reason is None:
                return
            if not unmet:
                self._sign(gate.id, decision, reason, False)
                return

            def confirmed(sure: bool | None) -> None:
                if sure:
                    self._sign(gate.id, decision, reason, True)
                else:
                    self.notify("the override was not signed", title="not signed", timeout=4)

            self.app.push_screen(OverrideDialog(gate.id, unmet, blink=self.phasef.blink), confirmed)

        self.app.push_screen(dialog, signed)

    @work(thread=True, exclusive=True, group="decision", exit_on_error=False)
    def _sign(self, gate_id: str, decision: str, reason: str, override: bool) -> None:
        try:
            message = self.source.approve(gate_id, decision, reason, override=override)
        except ApprovalError as exc:
            self.app.call_from_thread(self.notify, str(exc), title="not signed", severity="error", timeout=8)
            return
        self.app.call_from_thread(self.notify, message, title="signed", timeout=6)

    # -- copy and export ---------------------------------------------------------------------------------------------
    def _verdict_doc(self) -> dict[str, object] | None:
        from phasef_tui.exports import verdict_doc

        gate = self.current_gate()
        if gate is None:
            self.notify("no gate has opened yet", timeout=3)
            return None
        session = getattr(self.source, "session_dir", None)
        return verdict_doc(gate, session.name if session is not None else None)

    def action_copy(self) -> None:
        """The gate's verdicts with the evidence hashes, as Markdown, to the clipboard (OSC 52)."""
        from phasef_tui.exports import verdict_markdown

        doc = self._verdict_doc()
        if doc is not None:
            self.app.copy_to_clipboard(verdict_markdown(doc))
            self.notify(f"verdict of gate {doc['gate']} copied", title="clipboard", timeout=3)

    def action_export(self, fmt: str) -> None:
        from phasef_tui.exports import export_folder, render, verdict_markdown, write_export

        doc = self._verdict_doc()
        if doc is None:
            return
        text = render(doc, fmt, verdict_markdown)
        try:
            path = write_export(export_folder(self.source), f"verdict-{doc['gate']}", fmt, text)
        except OSError as exc:
            self.notify(str(exc), title="not exported", severity="error", timeout=8)
            return
        self.notify(f"verdict of gate {doc['gate']} to {path}", title="exported", timeout=6)
