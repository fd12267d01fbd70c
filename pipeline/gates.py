"""Operator gates: what evidence a gate binds, waiting for a decision (or its deadline), and recording it.

A gate opens with the hashes of the evidence it names and, when it follows an audit, the audit outcome read through
the typed verdict model (``AuditOutcome``) with its packet hash re-computed. A decision is accepted only while the
evidence is exactly what the gate opened on; a gate decided on unchanged evidence is never asked again.

The final gate also judges the plan's pass criteria as it opens (``pipeline.report.criteria``) and records them with
the gate; a GO there over an unmet criterion is refused unless it is signed as an override (and the project allows
overrides), and it is then recorded as one with the criteria it overrides.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pipeline.audit.verdict import load_outcome
from pipeline.clock import iso, now, parse_iso
from pipeline.config import StepConfig
from pipeline.errors import ControlError
from pipeline.hashing import MISSING, file_sha256, hash_paths, mapping_sha256, path_sha256
from pipeline.parts import SessionParts
from pipeline.registry import load_object
from pipeline.report import criteria

Decision = Literal["go", "no-go"]


class Gates:
    """The gates of one running session."""

    def __init__(self, parts: SessionParts) -> None:
        self.cfg = parts.cfg
        self.layout = parts.layout
        self.record = parts.recorder.record
        self.state = parts.recorder.state
        self.session_dir = parts.layout.session_dir
        self.stop_requested = parts.stop_requested
        self._gate_waiters: dict[str, asyncio.Future[None]] = {}

    def evidence(self, key: str) -> tuple[dict[str, str], dict[str, Any] | None]:
        """Hashes of the evidence a gate names, plus the bound audit outcome (its packet hash re-computed)."""
        sc = self.cfg.step(key)
        evidence = hash_paths(self.layout.expand(sc.evidence), self.session_dir)
        audit: dict[str, Any] | None = None
        if sc.audit:
            verdict_path = self.layout.artifacts(sc.audit) / "verdict.json"
            if not verdict_path.exists():
                audit = {"verdict": "BLOCKED", "reasons": [f"no audit verdict at {verdict_path}"]}
                evidence["audit:verdict.json"] = MISSING
            else:
                audit, packet_path = self._read_outcome(verdict_path)
                evidence["audit:verdict.json"] = file_sha256(verdict_path)
                if packet_path:
                    evidence["audit:packet"] = self._packet_sha(Path(packet_path))
        return evidence, audit

    def _read_outcome(self, verdict_path: Path) -> tuple[dict[str, Any], str | None]:
        """What the gate shows of the audit outcome, read through the typed model, and the packet it is bound to."""
        try:
            outcome = load_outcome(verdict_path)
        except ValueError as exc:
            return {"verdict": "INVALID", "reasons": [f"unreadable verdict.json: {exc}"]}, None
        audit: dict[str, Any] = {
            "verdict": outcome.verdict,
            "reasons": outcome.reasons,
            "packet_sha256": outcome.packet_sha256,
            "verdict_path": self.layout.relative(verdict_path),
            "auditors": [
                {
                    "name": a.name,
                    "role": a.role,
                    "verdict": a.verdict,
                    "findings": a.findings,
                    "blockers": a.blockers,
                    "error": a.error,
                }
                for a in outcome.auditors
            ],
        }
        return audit, outcome.packet_path or None

    def _packet_sha(self, path: Path) -> str:
        full = path if path.is_absolute() else self.session_dir / path
        try:
            fn = load_object("pipeline.audit.packet:packet_sha256")
            return str(fn(full))
        except (ImportError, ValueError):
            return path_sha256(full)
        except OSError:
            return MISSING

    def _judge(self, key: str, sc: StepConfig, audit: dict[str, Any] | None) -> list[dict[str, Any]] | None:
        """The pass criteria as the final gate opens, on the evidence it is bound to (None on other gates)."""
        if key != self.cfg.final_gate_key():
            return None
        return criteria.judge_final(self.cfg, key, audit, self.layout.expand(sc.evidence), self.session_dir)

    async def run(self, key: str, sc: StepConfig) -> None:
        gate = self.state.gates.get(key)
        evidence, audit = self.evidence(key)
        reopened = None
        if gate is not None and gate.state in ("decided", "timed_out"):
            if mapping_sha256(evidence) == gate.evidence_sha256:
                return  # decided on this very evidence before a restart: recorded once, never asked again
            reopened = f"the evidence changed since the {gate.state} decision ({gate.decision} by {gate.operator})"
        if gate is None or gate.state != "waiting" or self.state.steps[key].state != "waiting":
            deadline = iso(now() + timedelta(seconds=sc.timeout)) if sc.timeout else None
            self.record(
                "gate_opened",
                key,
                attempt=1,
                payload={
                    "prompt": sc.prompt or sc.title or f"decision needed at {key}",
                    "evidence": evidence,
                    "evidence_sha256": mapping_sha256(evidence),
                    "audit": audit,
                    "criteria": self._judge(key, sc, audit),
                    "deadline": deadline,
                    "reopened": reopened,
                },
            )
        gate = self.state.gates[key]
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gate_waiters[key] = fut
        timeout = None
        if gate.deadline:
            end = parse_iso(gate.deadline)
            timeout = max(0.0, (end - now()).total_seconds())
        try:
            while not fut.done():
                if self.stop_requested(key):
                    self.record("step_cancelled", key, payload={"reason": "cancelled while waiting"})
                    return
                try:
                    await asyncio.wait_for(asyncio.shield(fut), 0.2 if timeout is None else min(0.2, timeout))
                except TimeoutError:
                    if timeout is not None:
                        timeout -= 0.2
                        if timeout <= 0 and not fut.done():
                            self.record("gate_timed_out", key, payload={"deadline": gate.deadline})
                            return
        finally:
            self._gate_waiters.pop(key, None)

    def decide(
        self,
        gate_id: str,
        decision: Decision,
        operator: str,
        reason: str,
        *,
        evidence_sha256: str | None = None,
        key_fingerprint: str | None = None,
        role: str | None = None,
        via: str = "control",
        override: bool = False,
    ) -> dict[str, Any]:
        """Record an operator's decision on a waiting gate, or refuse it with a ``ControlError``.

        ``override`` signs a GO at the final gate over unmet pass criteria; without it such a GO is refused.
        """
        gate = self.state.gates.get(gate_id)
        if gate is None:
            raise ControlError(f"no gate {gate_id!r}; gates: {', '.join(self.state.gates) or 'none opened yet'}")
        if gate.state != "waiting":
            by = f" by {gate.operator}" if gate.operator else ""
            raise ControlError(f"gate {gate_id} is not waiting: {gate.state}{by} ({gate.decision})")
        if decision not in ("go", "no-go"):
            raise ControlError("decision must be 'go' or 'no-go'")
        if not operator.strip():
            raise ControlError("an operator name is required")
        if not reason.strip():
            raise ControlError("a reason is required")
        if role is not None and role != "approver":
            raise ControlError(f"operator {operator} has role {role!r}; only approvers can sign gates")
        current, _audit = self.evidence(gate_id)
        current_sha = mapping_sha256(current)
        refusal = None
        if current_sha != gate.evidence_sha256:
            changed = sorted(k for k in set(current) | set(gate.evidence) if current.get(k) != gate.evidence.get(k))
            refusal = f"evidence changed since the gate opened: {', '.join(changed)}"
        elif evidence_sha256 is not None and evidence_sha256 != gate.evidence_sha256:
            refusal = "the decision names different evidence than the gate holds (stale view?)"
        refusal = refusal or criteria.final_go_refusal(self.cfg, gate, decision, override)
        if refusal:
            self.record(
                "gate_refused",
                gate_id,
                payload={"operator": operator, "decision": decision, "reason": refusal, "via": via},
            )
            raise ControlError(refusal)
        audit_verdict = (gate.audit or {}).get("verdict")
        override = criteria.is_override(self.cfg, gate, decision)
        unmet = [str(c["criterion"]) for c in criteria.unmet(gate)] if gate.criteria is not None else []
        self.record(
            "gate_decided",
            gate_id,
            payload={
                "decision": decision,
                "operator": operator,
                "reason": reason,
                "evidence_sha256": gate.evidence_sha256,
                "audit_verdict": audit_verdict,
                "override": override,
                "unmet_criteria": unmet,
                "key_fingerprint": key_fingerprint,
                "via": via,
            },
        )
        fut = self._gate_waiters.get(gate_id)
        if fut is not None and not fut.done():
            fut.set_result(None)
        final = gate_id == self.cfg.final_gate_key()
        return {"gate": gate_id, "decision": decision, "operator": operator, "override": override, "final": final}
