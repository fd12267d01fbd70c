"""Auditor verdicts: parsing an auditor's free text into a checked verdict, and the outcome file the gate reads.

An auditor answers in prose with a JSON block somewhere in it. Only a block that states GO or NO-GO in the
documented shape, cites evidence from the packet it was given, and (when it names a packet hash) names the right
one, counts as a verdict; anything else is INVALID, which the gate treats as NO-GO, and the raw answer is kept so
the operator can see what the auditor actually said.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.fsio import atomic_write_text

OUTCOME_SCHEMA: Final = "phasef.audit_outcome/1"

Verdict = Literal["GO", "NO-GO"]
AuditorVerdict = Literal["GO", "NO-GO", "INVALID", "BLOCKED", "TIMEOUT"]
OutcomeVerdict = Literal["GO", "NO-GO", "INVALID", "BLOCKED"]
Role = Literal["primary", "recursive"]

_FENCED = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\r?\n(.*?)```", re.DOTALL)
_PART_NAME = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)")
_MIN_HASH_PREFIX = 12


class VerdictBlock(BaseModel):
    """The JSON block an auditor must end its answer with (see ``prompts/*.md``)."""

    model_config = ConfigDict(extra="ignore")
    verdict: str
    findings: list[str | dict[str, Any]] = Field(default_factory=list)
    blockers: list[str | dict[str, Any]] = Field(default_factory=list)
    evidence_refs: list[str] = Field(default_factory=list)
    packet_sha256: str | None = None


@dataclass(frozen=True)
class ParsedVerdict:
    verdict: Verdict
    findings: list[str | dict[str, Any]]
    blockers: list[str | dict[str, Any]]
    evidence_refs: list[str]


@dataclass(frozen=True)
class ParseFailure:
    reason: str


def find_json_block(text: str) -> dict[str, Any] | None:
    """The verdict object in an answer: the last fenced JSON block that decodes to an object, else the last
    top-level ``{...}`` object in the text (preferring objects that carry a ``verdict`` key)."""
    for body in reversed(_FENCED.findall(text)):
        try:
            obj = json.loads(body)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except ValueError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict):
            found.append(obj)
        pos = text.find("{", end)
    with_verdict = [o for o in found if "verdict" in o]
    if with_verdict:
        return with_verdict[-1]
    return found[-1] if found else None


def normalise_verdict(word: str) -> Verdict | None:
    key = re.sub(r"[\s_]+", "-", word.strip().upper())
    if key == "GO":
        return "GO"
    if key in ("NO-GO", "NOGO"):
        return "NO-GO"
    return None


def parse_verdict(text: str, part_names: list[str], packet_sha256: str) -> ParsedVerdict | ParseFailure:
    """Check an auditor's answer against the verdict schema and the packet it was given."""
    block = find_json_block(text)
    if block is None:
        return ParseFailure("no JSON object in the answer")
    try:
        parsed = VerdictBlock.model_validate(block)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        return ParseFailure(f"verdict block off-schema at '{where}': {first['msg']}")
    verdict = normalise_verdict(parsed.verdict)
    if verdict is None:
        return ParseFailure(f"verdict must be GO or NO-GO, got {parsed.verdict!r}")
    known = {n.lower() for n in part_names}
    unknown = [r for r in parsed.evidence_refs if (_ref_part(r) or "") not in known]
    if unknown:
        return ParseFailure(f"evidence_refs name parts not in the packet: {unknown[:5]}")
    if verdict == "GO" and not parsed.evidence_refs:
        return ParseFailure("a GO must cite evidence (evidence_refs is empty)")
    if verdict == "GO" and parsed.blockers:
        return ParseFailure(f"a GO with {len(parsed.blockers)} blocker(s) contradicts itself")
    named = (parsed.packet_sha256 or "").strip().lower()
    if named and (len(named) < _MIN_HASH_PREFIX or not packet_sha256.startswith(named)):
        return ParseFailure(f"verdict names packet {named[:16]}..., but the packet judged is {packet_sha256[:16]}...")
    return ParsedVerdict(verdict, parsed.findings, parsed.blockers, parsed.evidence_refs)


def _ref_part(ref: str) -> str | None:
    m = _PART_NAME.match(ref)
    return m.group(1).lower() if m else None


class AuditorResult(BaseModel):
    """One auditor's answer in one round, as recorded in ``verdict.json``."""

    model_config = ConfigDict(extra="forbid")
    name: str
    role: Role
    verdict: AuditorVerdict
    findings: list[str | dict[str, Any]] = Field(default_factory=list)
    blockers: list[str | dict[str, Any]] = Field(default_factory=list)
    evidence_refs: list[str] = Field(default_factory=list)
    raw_output_path: str = ""
    latency_s: float | None = None
    error: str | None = None


class AuditOutcome(BaseModel):
    """The contract between the audit step and the operator's gate (``verdict.json``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    schema_: Literal["phasef.audit_outcome/1"] = Field(default=OUTCOME_SCHEMA, alias="schema")
    verdict: OutcomeVerdict
    reasons: list[str]
    packet_sha256: str
    packet_path: str
    parts: dict[str, str]
    auditors: list[AuditorResult]
    green_only: bool
    stage: Literal["baseline", "final"]

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


def write_outcome(outcome: AuditOutcome, path: Path) -> None:
    """Write ``verdict.json`` atomically, so the gate never reads half a verdict."""
    atomic_write_text(path, outcome.to_json() + "\n")


def load_outcome(path: str | Path) -> AuditOutcome:
    """Read and validate ``verdict.json``; raises ``ValueError`` naming the file and the field."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{p}: not JSON: {exc}") from exc
    try:
        return AuditOutcome.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{p}: not a {OUTCOME_SCHEMA} outcome: {problems}") from exc
