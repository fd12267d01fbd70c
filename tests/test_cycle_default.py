"""The whole default cycle, as a new user runs it: ``phasef run --headless`` on the embedded default plan.

Gates are signed from a second process with ``phasef approve``, as an operator would. The figures the comparison
reports are recomputed here from the two dirty traces.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.spine_helpers import ROOT, has_event, journal_events, phasef, spawn, wait_for

pytestmark = pytest.mark.slow


def _violation_rate(trace: Path) -> float:
    turns = violations = 0
    for line in trace.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "tick" and rec.get("actor") in ("model", "repair"):
            turns += 1
            violations += rec.get("schema_error") is not None
    return violations / turns


def test_default_cycle_end_to_end(tmp_path: Path) -> None:
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    session = tmp_path / "sessions" / "cycle"
    started = time.monotonic()
    proc = spawn("run", "--headless", "--session", "cycle", cwd=tmp_path)
    try:
        wait_for(lambda: has_event(session, "gate_opened", "B.baseline-gate") or proc.poll() is not None, 600, "B")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        status = json.loads(phasef("status", "cycle", "--json", cwd=tmp_path).stdout)
        assert {s["step"]: s["state"] for s in status["steps"]}["voyager-realworld-eval"] == "succeeded"
        opened = [e for e in journal_events(session) if e["type"] == "gate_opened"][-1]
        # offline auditors cannot give a valid verdict, and the gate says so plainly
        assert opened["payload"]["audit"]["verdict"] in ("INVALID", "NO-GO", "BLOCKED")
        r = phasef(
            "approve",
            "cycle",
            "B.baseline-gate",
            "--decision",
            "go",
            "--as",
            "tester",
            "--reason",
            "offline auditors; rehearsing the loop",
            cwd=tmp_path,
        )
        assert r.returncode == 0 and "OVERRIDE of the audit verdict" in r.stdout, r.stdout + r.stderr
        wait_for(lambda: has_event(session, "gate_opened", "E.final-gate") or proc.poll() is not None, 900, "E")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        # the offline auditors cannot answer: the audit criterion is not met, so a plain GO is refused (the default
        # ends GO-OVERRIDE or NO-GO, never GO)
        crit = {
            c["criterion"]: c
            for c in json.loads(phasef("status", "cycle", "--json", cwd=tmp_path).stdout)["pass_criteria"]
        }
        assert crit["audit"]["met"] is False and crit["comparison"]["met"] is True, crit
        r = phasef("approve", "cycle", "E.final-gate", "--decision", "go", "--as", "t", "--reason", "x", cwd=tmp_path)
        assert r.returncode == 1 and "would override unmet pass criteria" in r.stderr, r.stdout + r.stderr
        r = phasef(
            "approve",
            "cycle",
            "E.final-gate",
            "--decision",
            "no-go",
            "--as",
            "tester",
            "--reason",
            "a random-init tiny model is not a release candidate",
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, out
    assert elapsed < 15 * 60
    status = json.loads(phasef("status", "cycle", "--json", cwd=tmp_path).stdout)
    assert status["final_decision"] == "NO-GO"
    states = {f"{s['stage']}.{s['step']}": s["state"] for s in status["steps"]}
    assert all(v == "succeeded" for k, v in states.items() if k != "E.final-gate"), states
    assert [g["decision"] for g in status["gates"]] == ["go", "no-go"]

    comparison = json.loads((session / "report" / "comparison.json").read_text())
    assert list(comparison)[:4] == ["schema", "pass_criteria", "final_decision", "overrides"]
    assert comparison["final_decision"]["decision"] == "NO-GO"
    assert [o["gate"] for o in comparison["overrides"]] == ["B.baseline-gate"]
    assert (session / "report" / "comparison.md").read_text().startswith("# Baseline vs fine-tuned\n\n## Pass criteria")
    base_trace = session / "artifacts/A/voyager-realworld-eval/dirty_trace.jsonl"
    tuned_trace = session / "artifacts/D/guard-mcu-eval/dirty_trace.jsonl"
    base_rate, tuned_rate = _violation_rate(base_trace), _violation_rate(tuned_trace)
    assert tuned_rate < base_rate
    text = json.dumps(comparison)
    assert str(round(base_rate, 4))[:5] in text or f"{base_rate:.4f}"[:5] in text
    for name in ("handoff/manifest.json",):
        assert (session / name).exists()
    assert phasef("handoff", "verify", str(session / "handoff"), cwd=tmp_path).returncode == 0
