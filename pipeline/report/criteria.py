"""The plan's pass criteria, judged at the final gate; what a GO there is worth; the final report.

The plan (phase-f-plan.md, "Pass Criteria") asks for more than one PASS flag. All three must hold:

- ``evidence``: evidence completeness, a death trace, a recovered chain and a context profile (the comparison's
  ``evidence`` block, from both runs' traces);
- ``comparison``: a comparative result, baseline vs post-training (a ``phasef.comparison/1`` document with status
  ``compared``);
- ``audit``: the recursive audit bound to the final gate says ``GO``.

They are judged when the final gate opens, on the very files the gate is bound to, and recorded in the journal with
the gate (``gate_opened.payload.criteria``). A GO signed while one is not met is an operator override: it needs an
explicit request (``phasef approve --override``, or the TUI's second confirmation), a project can forbid it
(``[project] final_override = false``), and the run ends ``GO-OVERRIDE`` (exit ``EXIT_GO_OVERRIDE``), never ``GO``.

This module reads files and state only; it imports neither the engine nor numpy (``phasef status`` imports it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import PhasefConfig
    from pipeline.state import GateState, SessionState

COMPARISON_SCHEMA = "phasef.comparison/1"
COMPARE_FUNCTION = "pipeline.report.compare:compare_step"
FINAL_REPORT_STEM = "final-decision"
EXIT_GO_OVERRIDE = 4
"""``phasef run --headless`` exit status when the operator signed GO over an unmet pass criterion."""

CRITERIA: tuple[tuple[str, str], ...] = (
    ("evidence", "evidence completeness (death trace + recovery chain + context profile)"),
    ("comparison", "comparative result (baseline vs post-training)"),
    ("audit", "recursive audit verdict = GO"),
)
LABELS = dict(CRITERIA)

DECISION_KINDS = {
    "GO": "pass: every criterion met and the operator signed GO",
    "GO-OVERRIDE": "operator override: GO signed while a pass criterion is not met",
    "NO-GO": "no-go",
}


def criterion(
    cid: str, met: bool, evidence: str, source: str | None = None, sha256: str | None = None
) -> dict[str, Any]:
    return {
        "criterion": cid,
        "label": LABELS[cid],
        "met": met,
        "evidence": evidence,
        "source": source,
        "sha256": sha256,
    }


def pending(why: str) -> list[dict[str, Any]]:
    """Every criterion not judged yet (before the final gate opens)."""
    return [criterion(cid, False, f"not judged yet: {why}") for cid, _ in CRITERIA]


# -- judging ------------------------------------------------------------------------------------------------------
def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _sha(path: Path) -> str | None:
    from pipeline.hashing import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return None


def _rel(path: Path, session_dir: Path) -> str:
    return str(path.relative_to(session_dir)) if path.is_relative_to(session_dir) else str(path)


def find_comparison(cfg: PhasefConfig, evidence: Iterable[Path], session_dir: Path) -> Path | None:
    """The comparison the final gate is judged on: one among its evidence, else a compare step's own copy."""
    for path in evidence:
        if path.suffix == ".json" and path.is_file():
            data = _load_json(path)
            if isinstance(data, dict) and data.get("schema") == COMPARISON_SCHEMA:
                return path
    for stage, step, sc in cfg.iter_steps():
        if sc.function == COMPARE_FUNCTION:
            path = session_dir / "artifacts" / stage / step / "comparison.json"
            if path.is_file():
                return path
    return None


def judge_comparison(doc: Any, source: str | None, sha256: str | None) -> list[dict[str, Any]]:
    """The ``evidence`` and ``comparison`` criteria from a comparison document (or its absence: ``doc`` None)."""
    if not isinstance(doc, Mapping):
        why = "no comparison report: neither among the final gate's evidence nor written by a comparison step"
        if source is not None:
            why = f"{source} is not a readable {COMPARISON_SCHEMA} document"
        return [criterion("evidence", False, why, source, sha256), criterion("comparison", False, why, source, sha256)]
    where = f"{source} (sha256 {sha256[:12]})" if source and sha256 else str(source or "the comparison")
    status = doc.get("status")
    if status == "compared":
        pairs = doc.get("pairs", {}).get("count") if isinstance(doc.get("pairs"), Mapping) else None
        names = []
        for role in ("baseline", "finetuned"):
            side = doc.get(role)
            names.append(str(side.get("name", role)) if isinstance(side, Mapping) else role)
        comp = criterion(
            "comparison", True, f"{where}: {names[0]} vs {names[1]} compared, {pairs} episode pair(s)", source, sha256
        )
    else:
        reasons = "; ".join(str(r) for r in doc.get("refusal") or []) or f"status {status!r}"
        comp = criterion("comparison", False, f"{where}: not compared ({reasons})", source, sha256)
    ev = doc.get("evidence")
    if status != "compared" or not isinstance(ev, Mapping):
        why = f"{where}: no evidence completeness (the runs were not compared)"
        return [criterion("evidence", False, why, source, sha256), comp]
    counts = []
    for role in ("baseline", "finetuned"):
        e = ev.get(role) if isinstance(ev.get(role), Mapping) else {}
        assert isinstance(e, Mapping)
        counts.append(
            f"{role} {e.get('death_traces', 0)} death trace(s), {e.get('recovered_chains', 0)} recovered chain(s), "
            f"context profile {'present' if e.get('context_profile') else 'missing'}"
        )
    missing = [str(m) for m in ev.get("missing") or []]
    met = bool(ev.get("complete")) and not missing
    text = f"{where}: " + "; ".join(counts) + ("" if met else " — missing: " + "; ".join(missing))
    return [criterion("evidence", met, text, source, sha256), comp]


def judge_audit(audit: Mapping[str, Any] | None, gate_id: str) -> dict[str, Any]:
    if audit is None:
        return criterion("audit", False, f"no audit is bound to the final gate {gate_id} (its 'audit' setting)")
    verdict = str(audit.get("verdict") or "INVALID")
    packet = audit.get("packet_sha256")
    where = str(audit.get("verdict_path") or "verdict.json")
    auditors = ", ".join(
        f"{a.get('name')} ({a.get('role')}) {a.get('verdict') or 'no verdict'}"
        for a in audit.get("auditors") or []
        if isinstance(a, Mapping)
    )
    text = f"{where}: {verdict}" + (f" on packet {str(packet)[:12]}" if packet else "")
    text += f"; auditors: {auditors}" if auditors else "; no auditor answered"
    reasons = [str(r) for r in audit.get("reasons") or []]
    if verdict != "GO" and reasons:
        text += " — " + "; ".join(reasons[:3])
    return criterion("audit", verdict == "GO", text, where, str(packet) if packet else None)


def judge_final(
    cfg: PhasefConfig, gate_id: str, audit: Mapping[str, Any] | None, evidence: Sequence[Path], session_dir: Path
) -> list[dict[str, Any]]:
    """The three criteria as the final gate opens, on the evidence it is bound to."""
    path = find_comparison(cfg, evidence, session_dir)
    doc = _load_json(path) if path is not None else None
    source = _rel(path, session_dir) if path is not None else None
    return [*judge_comparison(doc, source, _sha(path) if path is not None else None), judge_audit(audit, gate_id)]


# -- deciding ------------------------------------------------------------------------------------------------------
def unmet(gate: GateState) -> list[dict[str, Any]]:
    """The criteria a GO at this (final) gate would override; fail closed when none were recorded."""
    if gate.criteria is None:
        return [
            {
                "criterion": "judged",
                "label": "pass criteria judged",
                "met": False,
                "evidence": "the gate opened without its pass criteria being judged (reopen it: phasef run --resume)",
            }
        ]
    return [c for c in gate.criteria if not c.get("met")]


def describe(items: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(f"{c.get('label')} — {c.get('evidence')}" for c in items)


def final_go_refusal(cfg: PhasefConfig, gate: GateState, decision: str, override: bool) -> str | None:
    """Why a decision at the final gate is refused (a GO over unmet criteria without leave), or None."""
    if decision != "go" or gate.id != cfg.final_gate_key():
        return None
    missing = unmet(gate)
    if not missing:
        return None
    if not cfg.project.final_override:
        return (
            f"GO refused at the final gate {gate.id}: this project forbids overrides there "
            f"([project] final_override = false) and these pass criteria are not met: {describe(missing)}"
        )
    if not override:
        return (
            f"a GO at the final gate {gate.id} would override unmet pass criteria: {describe(missing)}; "
            "sign it as an override (phasef approve --override, or confirm it in the TUI) and the run ends "
            "GO-OVERRIDE, not GO"
        )
    return None


def is_override(cfg: PhasefConfig, gate: GateState, decision: str) -> bool:
    """A GO over a non-GO audit (any gate), or over an unmet pass criterion (the final gate)."""
    if decision != "go":
        return False
    audit_not_go = gate.audit is not None and gate.audit.get("verdict") != "GO"
    return audit_not_go or (gate.id == cfg.final_gate_key() and bool(unmet(gate)))


def final_outcome(state: SessionState, final_gate: str | None) -> str | None:
    """``GO`` / ``GO-OVERRIDE`` from the final gate's signature (``NO-GO`` is the engine's, from every gate)."""
    gate = state.gates.get(final_gate) if final_gate else None
    if gate is None or gate.decision != "go":
        return None
    return "GO-OVERRIDE" if gate.override else "GO"


def overrides(state: SessionState) -> list[dict[str, Any]]:
    """Every override signed in the session, in the order the gates opened."""
    out = []
    for gate in state.gates.values():
        if gate.override:
            out.append(
                {
                    "gate": gate.id,
                    "final": gate.id == state.final_gate,
                    "operator": gate.operator,
                    "reason": gate.reason,
                    "audit_verdict": (gate.audit or {}).get("verdict") if gate.audit is not None else None,
                    "unmet": [c.get("criterion") for c in unmet(gate)] if gate.id == state.final_gate else [],
                    "decided_at": gate.decided_at,
                }
            )
    return out


# -- the final report ------------------------------------------------------------------------------------------------
def decision_block(state: SessionState, decision: str | None) -> dict[str, Any]:
    gate = state.gates.get(state.final_gate) if state.final_gate else None
    word = decision or "pending"
    block: dict[str, Any] = {
        "decision": word,
        "kind": DECISION_KINDS.get(word, "pending: the final gate has not been signed"),
        "gate": state.final_gate,
    }
    if gate is not None and gate.state != "waiting":
        block.update(
            signed=gate.decision,
            operator=gate.operator,
            reason=gate.reason,
            override=gate.override,
            decided_at=gate.decided_at,
            unmet=[c.get("criterion") for c in unmet(gate)] if gate.decision == "go" else [],
        )
    return block


def with_criteria(
    doc: Mapping[str, Any],
    criteria: list[dict[str, Any]],
    final: dict[str, Any],
    overrides_: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """The document with the pass criteria, the final decision and the overrides first (after ``schema``)."""
    head = {"schema": doc.get("schema"), "pass_criteria": criteria, "final_decision": final, "overrides": overrides_}
    return head | {k: v for k, v in doc.items() if k not in head}


def render_markdown(doc: Mapping[str, Any]) -> list[str]:
    """The report's opening: the pass criteria table, the final decision and its kind, every override."""
    lines = ["## Pass criteria", "", "| criterion | met | evidence |", "|---|---|---|"]
    for c in doc.get("pass_criteria") or []:
        evidence = str(c.get("evidence", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {c.get('label')} | {'yes' if c.get('met') else '**no**'} | {evidence} |")
    final = doc.get("final_decision") or {}
    lines += ["", f"**Final decision: {final.get('decision', 'pending')}** — {final.get('kind', '')}"]
    if final.get("operator"):
        lines.append(f"signed {str(final.get('signed')).upper()} by {final['operator']}: {final.get('reason')}")
    lines += ["", "### Overrides", ""]
    listed = doc.get("overrides")
    if listed is None:
        return [*lines, "- listed here when the run ends", ""]
    for o in listed:
        what = f"unmet: {', '.join(o['unmet'])}" if o.get("unmet") else f"audit {o.get('audit_verdict')}"
        lines.append(
            f"- {o['gate']}{' (final)' if o.get('final') else ''}: GO by {o.get('operator')} over {what}"
            f" — {o.get('reason')}"
        )
    if not listed:
        lines.append("- none")
    return [*lines, ""]


def _write(path: Path, text: str) -> None:
    from pipeline.fsio import atomic_write_text

    atomic_write_text(path, text)


def write_final_report(
    cfg: PhasefConfig, session_dir: Path, project_dir: Path, state: SessionState, decision: str | None
) -> list[str]:
    """Put the criteria, the decision and the overrides at the top of ``report/comparison.{json,md}``.

    A comparison file a gate is bound to as evidence is left as it is (rewriting it would change the evidence a
    signed decision stands on); ``report/final-decision.{json,md}`` then carries the same opening, as it does when
    there is no comparison at all. Returns the paths written, session-relative.
    """
    try:
        return _write_final_report(cfg, session_dir, project_dir, state, decision)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # the run's end is recorded even so
        return [f"not written: {type(exc).__name__}: {exc}"]


def _write_final_report(
    cfg: PhasefConfig, session_dir: Path, project_dir: Path, state: SessionState, decision: str | None
) -> list[str]:
    from pipeline.jobs.context import resolve_path

    bound = {
        resolve_path(raw, session_dir, project_dir).resolve()
        for _, _, sc in cfg.iter_steps()
        if sc.kind == "gate"
        for raw in sc.evidence
    }
    folders = [
        str(sc.params.get("out", "report")) for _, _, sc in cfg.iter_steps() if sc.function == COMPARE_FUNCTION
    ] or ["report"]
    criteria = state.pass_criteria()
    final = decision_block(state, decision)
    listed = overrides(state)
    written = []
    target: tuple[Path, dict[str, Any]] | None = None
    for folder in folders:
        path = resolve_path(os.path.join(folder, "comparison.json"), session_dir, project_dir)
        data = _load_json(path) if path.is_file() else None
        if isinstance(data, dict) and data.get("schema") == COMPARISON_SCHEMA and path.resolve() not in bound:
            target = (path, data)
    if target is not None:
        from pipeline.report.compare import render_markdown as comparison_markdown

        path, data = target
        doc = with_criteria(data, criteria, final, listed)
        markdown = comparison_markdown(doc)  # first: a document it cannot render is left as it was
        _write(path, json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
        _write(path.with_suffix(".md"), markdown)
        written += [path, path.with_suffix(".md")]
    else:
        folder_path = session_dir / "report"
        folder_path.mkdir(parents=True, exist_ok=True)
        doc = with_criteria({"schema": "phasef.final-decision/1"}, criteria, final, listed)
        path = folder_path / f"{FINAL_REPORT_STEM}.json"
        _write(path, json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
        _write(path.with_suffix(".md"), "\n".join(["# Final decision", "", *render_markdown(doc)]))
        written += [path, path.with_suffix(".md")]
    return [_rel(p, session_dir) for p in written]
