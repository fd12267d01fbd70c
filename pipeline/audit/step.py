"""The ``audit`` step kind: build the packet, refuse green-only evidence, run the recursive audit, write the verdict.

The step succeeds whatever the verdict is (NO-GO, INVALID and BLOCKED are results the operator's gate shows and
decides on); it fails only when its own configuration is wrong (unknown auditor, malformed auditor table, no
resolved config), because then there is nothing honest to record.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.audit.backends import ApiBackend, AuditorBackend, CliBackend
from pipeline.audit.evidence import collect_evidence
from pipeline.audit.packet import Packet, build_packet
from pipeline.audit.params import ApiAuditor, AuditParams, CliAuditor
from pipeline.audit.recursion import AuditRun, run_recursive_audit
from pipeline.audit.verdict import AuditOutcome, write_outcome
from pipeline.jobs.context import StepContext, StepFailed

VERDICT_FILE = "verdict.json"
PACKET_DIR = "packet"
AUDITORS_DIR = "auditors"


def load_auditors(config_path: Path | None, names: list[str]) -> dict[str, CliAuditor | ApiAuditor]:
    """The ``[auditors.<name>]`` sections the step names, from the run's resolved config (``StepFailed`` if bad)."""
    from pipeline.config import ConfigError, read_section

    if config_path is None:
        raise StepFailed("the step has no resolved config (ctx.config_path) to read [auditors] from")
    try:
        section = read_section(config_path, "auditors")
    except ConfigError as exc:
        raise StepFailed(f"cannot read the run's config: {exc}") from exc
    auditors: dict[str, CliAuditor | ApiAuditor] = section.value
    chosen: dict[str, CliAuditor | ApiAuditor] = {}
    for name in names:
        mine = [str(i) for i in section.issues if i.field in ("auditors", f"auditors.{name}")]
        mine += [str(i) for i in section.issues if i.field.startswith(f"auditors.{name}.")]
        if mine:
            raise StepFailed("; ".join(mine))
        if name not in auditors:
            known = ", ".join(sorted(auditors)) or "none"
            raise StepFailed(f"{config_path}: auditor {name!r} is not defined in [auditors] (defined: {known})")
        chosen[name] = auditors[name]
    return chosen


def make_backend(name: str, config: CliAuditor | ApiAuditor, ctx: StepContext, workdir: Path) -> AuditorBackend:
    if isinstance(config, CliAuditor):
        return CliBackend(name, config, workdir)
    return ApiBackend(name, config, ctx.services)


def _clear_previous_attempt(artifacts_dir: Path) -> None:
    """Remove what an earlier attempt wrote, first of all its verdict: a gate must never read a verdict that is
    not about the packet this attempt builds."""
    (artifacts_dir / VERDICT_FILE).unlink(missing_ok=True)
    for name in (PACKET_DIR, AUDITORS_DIR):
        shutil.rmtree(artifacts_dir / name, ignore_errors=True)


def _session_relative(path: Path, session_dir: Path) -> str:
    try:
        return str(path.absolute().relative_to(session_dir.absolute()))
    except ValueError:
        return str(path)


def run(ctx: StepContext) -> dict[str, Any]:
    try:
        params = AuditParams.model_validate(ctx.params)
    except ValidationError as exc:
        raise StepFailed(f"audit params: {exc}") from exc
    auditors = load_auditors(ctx.config_path, params.auditors)
    _clear_previous_attempt(ctx.artifacts_dir)
    auditors_dir = ctx.artifacts_dir / AUDITORS_DIR
    auditors_dir.mkdir(parents=True, exist_ok=True)
    backends = [make_backend(name, auditors[name], ctx, auditors_dir) for name in params.auditors]

    evidence = collect_evidence(params, ctx.resolve, ctx.artifacts_dir / PACKET_DIR)
    packet = build_packet(
        params.stage, evidence.parts, ctx.artifacts_dir / PACKET_DIR, params.max_part_chars, ctx.session_dir
    )
    ctx.emit(
        "audit_packet",
        packet_sha256=packet.sha256,
        parts=packet.part_hashes,
        missing=evidence.missing,
        stats=evidence.stats,
    )
    for line in evidence.missing:
        ctx.log(f"evidence missing: {line}")

    if evidence.missing:
        run_result = AuditRun(
            "NO-GO",
            [f"green-only: {m}" for m in evidence.missing]
            + ["evidence is incomplete, so no auditor was asked (a PASS without deep-water evidence is not a PASS)"]
            + [f"also blocked: {why}" for b in backends if (why := b.blocked_reason())],
        )
    else:
        run_result = asyncio.run(
            run_recursive_audit(
                packet,
                backends[0],
                backends[1],
                rounds=params.rounds,
                timeout=params.timeout,
                out_dir=auditors_dir,
                progress=lambda event, payload: ctx.emit(event, **payload),
                path_label=lambda path: _session_relative(path, ctx.session_dir),
            )
        )
    outcome = _outcome(params, packet, run_result, evidence_missing=bool(evidence.missing), ctx=ctx)
    verdict_path = ctx.artifacts_dir / VERDICT_FILE
    write_outcome(outcome, verdict_path)
    ctx.emit("audit_verdict", verdict=outcome.verdict, green_only=outcome.green_only, reasons=outcome.reasons)
    for reason in outcome.reasons:
        ctx.log(f"{outcome.verdict}: {reason}")
    return {
        "verdict": outcome.verdict,
        "green_only": outcome.green_only,
        "packet_sha256": outcome.packet_sha256,
        "verdict_path": _session_relative(verdict_path, ctx.session_dir),
        "reasons": outcome.reasons,
    }


def _outcome(
    params: AuditParams, packet: Packet, run_result: AuditRun, *, evidence_missing: bool, ctx: StepContext
) -> AuditOutcome:
    results = [
        r.model_copy(update={"raw_output_path": _session_relative(Path(r.raw_output_path), ctx.session_dir)})
        if r.raw_output_path
        else r
        for r in run_result.results
    ]
    return AuditOutcome(
        verdict=run_result.verdict,
        reasons=run_result.reasons,
        packet_sha256=packet.sha256,
        packet_path=_session_relative(packet.json_path, ctx.session_dir),
        parts=packet.part_hashes,
        auditors=results,
        green_only=evidence_missing,
        stage=params.stage,
    )
