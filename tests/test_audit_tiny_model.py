"""The offline default: both auditors are the session's own ``mlx_lm.server`` with the tiny random model.

Such a model cannot write a verdict, so the honest outcome is INVALID with its words shown; this test runs the
real server (through the ``mlx_serve`` service kind) and the real client, nothing doubled.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipeline.serve import MlxServe
from tests.test_audit_support import Session
from tests.test_data_support import make_tiny_model


@pytest.mark.slow
def test_tiny_model_auditors_give_invalid_with_the_raw_answer_shown(tmp_path: Path) -> None:
    session = Session(tmp_path)
    corpus = [
        "verdict GO NO-GO findings blockers evidence_refs death_traces recovery_chains context_profile",
        '{"verdict": "NO-GO", "findings": [], "blockers": []}',
        "the agent died at tick 8 after a fatal action; the chain recovered at tick 5",
    ] * 20
    model = make_tiny_model(tmp_path / "tiny-model", corpus)
    service = MlxServe("agent-model", {"model": str(model)}, session.dir, tmp_path, tmp_path / "serve.log")
    info = asyncio.run(service.start(180))
    try:
        for name in ("first", "second"):
            session.auditors[name] = {"kind": "api", "service": "agent-model", "max_tokens": 48, "retries": 0}
        session.params["timeout"] = 120
        summary, outcome = session.run(services={"agent-model": info})
    finally:
        asyncio.run(service.stop())
    assert summary["verdict"] == outcome.verdict == "INVALID"
    first = outcome.auditors[0]
    assert first.verdict == "INVALID" and first.latency_s is not None
    answer = (session.dir / first.raw_output_path).read_text()
    assert answer  # the model did answer; its words are kept, and shown in the gate's reasons
    words = " ".join(answer.split())
    shown = words[:40] if words else f"only whitespace ({len(answer)} characters)"
    assert shown in outcome.reasons[0]
    assert any("INVALID counts as NO-GO" in r for r in outcome.reasons)
