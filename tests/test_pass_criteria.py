"""The plan's pass criteria, enforced by the real ``phasef run --headless``: GO only when every criterion is met.

A small plan runs the real comparison step on two synthetic evaluated runs, the real audit step with two auditor
doubles (real programs reading the real prompt on stdin, answering by plan, see ``tests/test_audit_support.py``)
and gates signed with the real ``phasef approve`` from another process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import tomli_w

from tests.spine_helpers import approve, has_event, headless_run, journal_events, phasef, wait_for, write_plan
from tests.test_audit_support import DOUBLE
from tests.test_compare_report import EpisodeSpec, baseline_specs, write_eval

EPISODES = 12


def finetuned_with_a_death(n: int = EPISODES) -> list[EpisodeSpec]:
    """Recovers at the first attempt, but t3 still dies: the audited trace holds a death (deep-water evidence)."""
    specs = []
    for i in range(n):
        chains = [(1, "recovered"), (1, "death")] if i == 3 else [(1, "recovered"), (1, "recovered")]
        specs.append(EpisodeSpec(f"t{i}", chains=chains, latency=0.5))
    return specs


def project(tmp_path: Path, first: list[str], second: list[str], *, final_override: bool | None = None) -> Path:
    """Runs on disk, auditor doubles answering ``first``/``second`` call by call, and the plan (B audit + gate,
    E comparison + final audit + final gate)."""
    write_eval(tmp_path / "runs" / "base", baseline_specs(EPISODES), seed=1)
    write_eval(tmp_path / "runs" / "fine", finetuned_with_a_death(), seed=2)
    (tmp_path / "notes.md").write_text("Architect: judge the deaths and the recoveries, not the averages.\n")
    script = tmp_path / "auditor-double"
    script.write_text(DOUBLE.format(python=sys.executable))
    script.chmod(0o755)
    auditors: dict[str, Any] = {}
    for name, plan in (("first", first), ("second", second)):
        log = tmp_path / f"log-{name}"
        log.mkdir()
        (tmp_path / f"plan-{name}.json").write_text(json.dumps(plan))
        auditors[name] = {"kind": "cli", "command": [str(script), str(tmp_path / f"plan-{name}.json"), str(log)]}
    audit = {"auditors": ["first", "second"], "rounds": 1, "timeout": 30, "notes": "{project}/notes.md"}
    comparison = "artifacts/E/comparison/comparison.json"
    plan: dict[str, Any] = {
        "project": {"name": "criteria"} | ({} if final_override is None else {"final_override": final_override}),
        "auditors": auditors,
        "stages": {
            "B": {
                "title": "Baseline audit",
                "sequential": True,
                "steps": {
                    "audit": {
                        "kind": "audit",
                        "params": audit
                        | {
                            "stage": "baseline",
                            "report": "{project}/runs/base/eval_report.json",
                            "trace": "{project}/runs/base/dirty_trace.jsonl",
                        },
                    },
                    "gate": {
                        "kind": "gate",
                        "audit": "B.audit",
                        "evidence": ["{project}/runs/base/eval_report.json"],
                        "timeout": 600,
                    },
                },
            },
            "E": {
                "title": "Final",
                "needs": ["B"],
                "sequential": True,
                "steps": {
                    "comparison": {
                        "kind": "builtin",
                        "function": "pipeline.report.compare:compare_step",
                        "params": {
                            "baseline": {"report": "{project}/runs/base/eval_report.json", "name": "baseline"},
                            "finetuned": {"report": "{project}/runs/fine/eval_report.json", "name": "fine-tuned"},
                            "noise": {"resamples": 200},
                            "min_ticks": 10,
                        },
                    },
                    "final-audit": {
                        "kind": "audit",
                        "params": audit
                        | {
                            "stage": "final",
                            "report": "{project}/runs/fine/eval_report.json",
                            "trace": "{project}/runs/fine/dirty_trace.jsonl",
                            "comparison": comparison,
                        },
                    },
                    "final-gate": {
                        "kind": "gate",
                        "audit": "E.final-audit",
                        "evidence": [comparison],
                        "timeout": 600,
                    },
                },
            },
        },
    }
    return write_plan(tmp_path, tomli_w.dumps(plan))


def sign(tmp_path: Path, session: str, gate: str, decision: str, *extra: str) -> Any:
    return approve(tmp_path, session, gate, decision, "olga", "read it", *extra)


def status(tmp_path: Path, session: str) -> dict[str, Any]:
    return json.loads(phasef("status", session, "--json", cwd=tmp_path).stdout)  # type: ignore[no-any-return]


def criteria_by_id(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["criterion"]: c for c in data["pass_criteria"]}


def test_both_auditors_go_ends_go_with_exit_0(tmp_path: Path) -> None:
    project(tmp_path, ["go", "go"], ["go", "go"])
    with headless_run(tmp_path, "s", "--plain") as (proc, session):
        wait_for(lambda: has_event(session, "gate_opened", "B.gate"), 90, "the baseline gate")
        before = criteria_by_id(status(tmp_path, "s"))
        assert [c["met"] for c in before.values()] == [False, False, False]
        assert "not judged yet: the final gate E.final-gate has not opened" in before["audit"]["evidence"]
        r = sign(tmp_path, "s", "B.gate", "go")
        assert r.returncode == 0 and "OVERRIDE" not in r.stdout, r.stdout + r.stderr
        wait_for(lambda: has_event(session, "gate_opened", "E.final-gate"), 120, "the final gate")
        data = status(tmp_path, "s")
        crit = criteria_by_id(data)
        assert list(crit) == ["evidence", "comparison", "audit"]
        assert all(c["met"] for c in crit.values()), crit
        assert crit["comparison"]["source"] == "artifacts/E/comparison/comparison.json"
        assert "baseline vs fine-tuned compared, 12 episode pair(s)" in crit["comparison"]["evidence"]
        assert "finetuned 1 death trace(s)" in crit["evidence"]["evidence"]
        assert crit["audit"]["evidence"].startswith("artifacts/E/final-audit/verdict.json: GO on packet ")
        assert "first (primary) GO, second (recursive) GO" in crit["audit"]["evidence"]
        r = sign(tmp_path, "s", "E.final-gate", "go")
        assert r.returncode == 0 and "OVERRIDE" not in r.stdout, r.stdout + r.stderr
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "run completed: final decision GO, exit 0" in out
    data = status(tmp_path, "s")
    assert data["final_decision"] == "GO" and data["exit_code"] == 0
    assert [g["override"] for g in data["gates"]] == [False, False]
    doc = json.loads((session / "report" / "comparison.json").read_text())
    assert doc["final_decision"]["decision"] == "GO" and doc["final_decision"]["kind"].startswith("pass")
    assert doc["overrides"] == []


def test_go_over_an_invalid_audit_needs_override_and_ends_go_override(tmp_path: Path) -> None:
    # the baseline audit says NO-GO (an intermediate override: allowed, kept visible); the final primary answers
    # garbage, which is INVALID
    project(tmp_path, ["nogo", "garbage"], ["nogo", "go"])
    with headless_run(tmp_path, "s", "--plain") as (proc, session):
        wait_for(lambda: has_event(session, "gate_opened", "B.gate"), 90, "the baseline gate")
        r = sign(tmp_path, "s", "B.gate", "go")
        assert r.returncode == 0 and "as an OVERRIDE of the audit verdict" in r.stdout, r.stdout + r.stderr
        wait_for(lambda: has_event(session, "gate_opened", "E.final-gate"), 120, "the final gate")
        crit = criteria_by_id(status(tmp_path, "s"))
        assert crit["evidence"]["met"] and crit["comparison"]["met"] and not crit["audit"]["met"]
        assert "first (primary) INVALID" in crit["audit"]["evidence"]

        refused = sign(tmp_path, "s", "E.final-gate", "go")
        assert refused.returncode == 1
        assert "would override unmet pass criteria: recursive audit verdict = GO" in refused.stderr
        assert not has_event(session, "gate_decided", "E.final-gate")
        r = sign(tmp_path, "s", "E.final-gate", "go", "--override")
        assert r.returncode == 0, r.stderr
        assert "GO signed by olga as an OVERRIDE of unmet pass criteria: the run ends GO-OVERRIDE" in r.stdout
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 4, out
    assert "run completed: final decision GO-OVERRIDE, exit 4" in out
    data = status(tmp_path, "s")
    assert data["final_decision"] == "GO-OVERRIDE" and data["exit_code"] == 4
    assert [(g["id"], g["override"], g["final"]) for g in data["gates"]] == [
        ("B.gate", True, False),
        ("E.final-gate", True, True),
    ]
    refusals = [e for e in journal_events(session) if e["type"] == "gate_refused"]
    assert len(refusals) == 1 and "recursive audit verdict = GO" in refusals[0]["payload"]["reason"]
    decided = [e for e in journal_events(session) if e["type"] == "gate_decided"]
    assert decided[-1]["payload"]["unmet_criteria"] == ["audit"]

    # the merged report opens with the criteria and the decision with its kind, and lists every override
    doc = json.loads((session / "report" / "comparison.json").read_text())
    assert list(doc)[:4] == ["schema", "pass_criteria", "final_decision", "overrides"]
    assert [(c["criterion"], c["met"]) for c in doc["pass_criteria"]] == [
        ("evidence", True),
        ("comparison", True),
        ("audit", False),
    ]
    assert doc["final_decision"]["decision"] == "GO-OVERRIDE"
    assert doc["final_decision"]["kind"].startswith("operator override")
    assert [(o["gate"], o["final"], o["audit_verdict"], o["unmet"]) for o in doc["overrides"]] == [
        ("B.gate", False, "NO-GO", []),
        ("E.final-gate", True, doc["overrides"][1]["audit_verdict"], ["audit"]),
    ]
    md = (session / "report" / "comparison.md").read_text().splitlines()
    assert md[:6] == [
        "# Baseline vs fine-tuned",
        "",
        "## Pass criteria",
        "",
        "| criterion | met | evidence |",
        "|---|---|---|",
    ]
    assert md[6].startswith("| evidence completeness (death trace + recovery chain + context profile) | yes |")
    assert md[8].startswith("| recursive audit verdict = GO | **no** | artifacts/E/final-audit/verdict.json: ")
    text = "\n".join(md)
    assert "**Final decision: GO-OVERRIDE** — operator override" in text
    assert "- B.gate: GO by olga over audit NO-GO — read it" in text
    assert "- E.final-gate (final): GO by olga over unmet: audit — read it" in text
    assert text.index("## Pass criteria") < text.index("## Delta table")

    # the gate's evidence (the comparison step's own copy) was not touched: a resume asks nothing again
    r = phasef("run", "--headless", "--plain", "--resume", "s", cwd=tmp_path, timeout=120)
    assert r.returncode == 4, r.stdout + r.stderr
    assert sum(e["type"] == "gate_opened" for e in journal_events(session)) == 2


def test_final_override_false_refuses_the_go_even_with_override(tmp_path: Path) -> None:
    project(tmp_path, ["go", "garbage"], ["go", "go"], final_override=False)
    with headless_run(tmp_path, "s", "--plain") as (proc, session):
        wait_for(lambda: has_event(session, "gate_opened", "B.gate"), 90, "the baseline gate")
        assert sign(tmp_path, "s", "B.gate", "go").returncode == 0
        wait_for(lambda: has_event(session, "gate_opened", "E.final-gate"), 120, "the final gate")
        for extra in ((), ("--override",)):
            r = sign(tmp_path, "s", "E.final-gate", "go", *extra)
            assert r.returncode == 1, r.stdout
            assert "this project forbids overrides there ([project] final_override = false)" in r.stderr
            assert "recursive audit verdict = GO" in r.stderr
        assert not has_event(session, "gate_decided", "E.final-gate")
        r = sign(tmp_path, "s", "E.final-gate", "no-go")
        assert r.returncode == 0, r.stderr
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 3, out
    data = status(tmp_path, "s")
    assert data["final_decision"] == "NO-GO"
    assert sum(e["type"] == "gate_refused" for e in journal_events(session)) == 2
