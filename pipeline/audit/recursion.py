"""The recursive dual audit: a primary verdict, judged by a second auditor, until they agree or rounds run out.

The only way to GO is both auditors answering a well-formed GO in the same round. Two NO-GOs end the audit at
once; a disagreement gets another round (the primary sees the recursive auditor's verdict) until the round limit,
after which it is NO-GO. An auditor that cannot be asked makes the gate BLOCKED before anyone is asked; an
unparseable answer makes it INVALID; a timeout makes it NO-GO. Every answer is kept, in order, with its reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.audit import prompts
from pipeline.audit.backends import Answer, AuditorBackend
from pipeline.audit.packet import Packet
from pipeline.audit.verdict import AuditorResult, OutcomeVerdict, ParsedVerdict, Role, parse_verdict

_RAW_EXCERPT = 2000
_REASON_EXCERPT = 200

ProgressFn = Callable[[str, dict[str, object]], None]


@dataclass
class AuditRun:
    verdict: OutcomeVerdict
    reasons: list[str]
    results: list[AuditorResult] = field(default_factory=list)


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"


def judge(answer: Answer, name: str, role: Role, raw_path: Path, packet: Packet) -> AuditorResult:
    """Turn an auditor's answer into its recorded verdict (GO/NO-GO only from a well-formed block)."""
    base = AuditorResult(
        name=name, role=role, verdict="INVALID", raw_output_path=str(raw_path), latency_s=answer.latency_s
    )
    if answer.status == "timeout":
        return base.model_copy(update={"verdict": "TIMEOUT", "error": answer.error})
    if answer.status == "error":
        return base.model_copy(update={"verdict": "BLOCKED", "error": answer.error})
    parsed = parse_verdict(answer.text, packet.part_names, packet.sha256)
    if not isinstance(parsed, ParsedVerdict):
        return base.model_copy(update={"error": parsed.reason})
    return base.model_copy(
        update={
            "verdict": parsed.verdict,
            "findings": parsed.findings,
            "blockers": parsed.blockers,
            "evidence_refs": parsed.evidence_refs,
        }
    )


def describe_for_peer(result: AuditorResult) -> str:
    """How one auditor's verdict is shown to the other: the verdict block, or why there is none and what it said."""
    if result.verdict in ("GO", "NO-GO"):
        block = {
            "verdict": result.verdict,
            "findings": result.findings,
            "blockers": result.blockers,
            "evidence_refs": result.evidence_refs,
        }
        return "```json\n" + json.dumps(block, indent=2, ensure_ascii=False) + "\n```"
    lines = [f"No valid verdict: {result.verdict} ({result.error or 'no reason given'})."]
    raw = Path(result.raw_output_path)
    text = raw.read_text(encoding="utf-8", errors="replace") if raw.is_file() else ""
    if text.strip():
        lines += ["", "What it answered (start):", "", "````text", text[:_RAW_EXCERPT].rstrip(), "````"]
    return "\n".join(lines)


def _excerpt(path: Path) -> str:
    """What an auditor answered, in a few words for the gate's reasons (the whole answer stays in its file)."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    flat = " ".join(text.split())
    if not text:
        return "nothing (an empty answer)"
    if not flat:
        return f"only whitespace ({len(text)} characters)"
    return repr(flat[:_REASON_EXCERPT] + ("..." if len(flat) > _REASON_EXCERPT else ""))


def _summary(result: AuditorResult, round_no: int, path_label: Callable[[Path], str]) -> str:
    """One line per answer for the gate: the verdict and why; for a non-verdict, what the auditor said."""
    who = f"{result.role} auditor {result.name!r} (round {round_no})"
    if result.verdict == "GO":
        return f"{who}: GO citing {', '.join(result.evidence_refs[:5])}"
    if result.verdict == "NO-GO":
        blockers = [b if isinstance(b, str) else json.dumps(b, ensure_ascii=False) for b in result.blockers]
        detail = "; ".join(blockers[:3]) if blockers else "no blockers named"
        return f"{who}: NO-GO ({detail})"
    raw = Path(result.raw_output_path)
    return f"{who}: {result.verdict}: {result.error}; it answered {_excerpt(raw)} (raw output: {path_label(raw)})"


async def run_recursive_audit(
    packet: Packet,
    primary: AuditorBackend,
    recursive: AuditorBackend,
    *,
    rounds: int,
    timeout: float,
    out_dir: Path,
    progress: ProgressFn | None = None,
    path_label: Callable[[Path], str] = str,
) -> AuditRun:
    """Ask the primary auditor, then the recursive auditor about the primary's verdict, round by round."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def emit(event: str, **payload: object) -> None:
        if progress is not None:
            progress(event, payload)

    pairs: list[tuple[AuditorBackend, Role]] = [(primary, "primary"), (recursive, "recursive")]
    blocked = [(b, role, reason) for b, role in pairs if (reason := b.blocked_reason())]
    if blocked:
        results = [AuditorResult(name=b.name, role=role, verdict="BLOCKED", error=why) for b, role, why in blocked]
        reasons = [why for _, _, why in blocked] + ["no auditor was asked: the gate cannot be audited as set up"]
        return AuditRun("BLOCKED", reasons, results)

    system = prompts.render("system", part_names=", ".join(f"`{n}`" for n in packet.part_names))
    packet_md = packet.md_path.read_text(encoding="utf-8")
    run = AuditRun("NO-GO", [])
    previous: AuditorResult | None = None
    for round_no in range(1, rounds + 1):
        discussion = ""
        if previous is not None:
            discussion = prompts.render(
                "discussion",
                previous_round=round_no - 1,
                recursive_name=recursive.name,
                recursive_verdict=describe_for_peer(previous),
            )
        first = await _ask(
            primary,
            "primary",
            system,
            prompts.render(
                "primary", stage=packet.stage, packet_sha256=packet.sha256, discussion=discussion, packet=packet_md
            ),
            out_dir / f"round{round_no}-primary-{_file_safe(primary.name)}.txt",
            timeout,
            packet,
            emit,
        )
        second = await _ask(
            recursive,
            "recursive",
            system,
            prompts.render(
                "recursive",
                stage=packet.stage,
                round=round_no,
                primary_name=primary.name,
                primary_verdict=describe_for_peer(first),
                packet_sha256=packet.sha256,
                packet=packet_md,
            ),
            out_dir / f"round{round_no}-recursive-{_file_safe(recursive.name)}.txt",
            timeout,
            packet,
            emit,
        )
        run.results += [first, second]
        run.reasons += [_summary(first, round_no, path_label), _summary(second, round_no, path_label)]
        verdicts = {first.verdict, second.verdict}
        if verdicts == {"GO"}:
            run.verdict = "GO"
            run.reasons.append(f"both auditors GO in round {round_no}")
            return run
        if "BLOCKED" in verdicts:
            run.verdict = "BLOCKED"
            run.reasons.append("an auditor could not be asked (see its error); no verdict")
            return run
        if "INVALID" in verdicts:
            run.verdict = "INVALID"
            run.reasons.append("an auditor's answer is not a valid verdict; INVALID counts as NO-GO")
            return run
        if "TIMEOUT" in verdicts:
            run.reasons.append("an auditor gave no answer in time; no answer counts as NO-GO")
            return run
        if verdicts == {"NO-GO"}:
            run.reasons.append(f"both auditors NO-GO in round {round_no}")
            return run
        previous = second
        emit("audit_disagreement", round=round_no, primary=first.verdict, recursive=second.verdict)
    run.reasons.append(f"the auditors still disagree after {rounds} round(s): round limit reached, NO-GO")
    return run


async def _ask(
    backend: AuditorBackend,
    role: Role,
    system: str,
    prompt: str,
    raw_path: Path,
    timeout: float,
    packet: Packet,
    emit: Callable[..., None],
) -> AuditorResult:
    emit("auditor_asked", auditor=backend.name, role=role, prompt_chars=len(system) + len(prompt))
    answer = await backend.ask(system, prompt, raw_path, timeout)
    result = judge(answer, backend.name, role, raw_path, packet)
    emit(
        "auditor_answered",
        auditor=backend.name,
        role=role,
        verdict=result.verdict,
        latency_s=result.latency_s,
        error=result.error,
    )
    return result
