"""Builders shared by the audit tests: a canonical dirty trace with deaths and recovery chains, an auditor double
that is a real program reading the real prompt, and a session laid out the way the engine lays it out. The tests
at the bottom check the builders themselves.

The CLI double reads the prompt on stdin (or from the ``{prompt_file}`` argument), keeps a copy of every prompt it
got, and answers what its plan says for that call: a GO or NO-GO verdict block that cites the packet hash it read,
garbage, a hang, a failing exit, or an answer that prints its API key.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import tomli_w

from pipeline.audit.step import run
from pipeline.audit.verdict import AuditOutcome, ParsedVerdict, load_outcome, parse_verdict
from pipeline.jobs.context import ServiceInfo, StepContext
from pipeline.traces.schema import parse_record

DOUBLE = textwrap.dedent(
    """\
    #!{python}
    import json, os, pathlib, re, sys, time

    plan_path, log_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    prompt = pathlib.Path(sys.argv[3]).read_text() if len(sys.argv) > 3 else sys.stdin.read()
    n = len(list(log_dir.glob("call-*.txt")))
    (log_dir / f"call-{{n}}.txt").write_text(prompt)
    (log_dir / f"pid-{{n}}").write_text(str(os.getpid()))
    plan = json.loads(pathlib.Path(plan_path).read_text())
    mode = plan[min(n, len(plan) - 1)]
    sha = re.search(r"packet_sha256: `([0-9a-f]{{64}})`", prompt).group(1)
    token = f"{{log_dir.name}}-call{{n}}"

    def answer(verdict, **fields):
        block = {{"verdict": verdict, "packet_sha256": sha, **fields}}
        print(f"I read the packet ({{len(prompt)}} chars).\\n```json\\n{{json.dumps(block)}}\\n```")

    if mode == "go":
        answer("GO", findings=[f"finding-{{token}}"], evidence_refs=["death_traces:ep-2", "context_profile"])
    elif mode == "nogo":
        answer("NO-GO", findings=[f"finding-{{token}}"], blockers=[f"blocker-{{token}}"], evidence_refs=["report"])
    elif mode == "garbage":
        print(f"garbage-{{token}} lorem ipsum {{{{ not json")
    elif mode == "hang":
        print("thinking...", flush=True)
        time.sleep(60)
    elif mode == "fail":
        print("quota exceeded", file=sys.stderr)
        sys.exit(3)
    elif mode == "leak":
        print("my key is " + os.environ["AUDIT_TEST_KEY"])
        answer("GO", findings=["ok"], evidence_refs=["report"])
    """
)


def write_trace(path: Path, *, deaths: bool = True, chains: bool = True, context: bool = True) -> None:
    """A small canonical dirty trace: one episode with a recovered chain, one that dies in a chain."""
    records: list[dict[str, Any]] = []
    ts = 1_700_000_000.0
    for episode, dies in (("ep-1", False), ("ep-2", deaths)):
        records.append({"kind": "episode_start", "episode": episode, "ts": ts, "task": "fix the bug", "traps": []})
        for t in range(10):
            ts += 1
            tick: dict[str, Any] = {
                "kind": "tick",
                "episode": episode,
                "tick": t,
                "ts": ts,
                "outcome": "ok",
                "action": {"tool": "bash", "args": {"command": f"ls {t}"}},
                "observation": f"out {t}",
                "progress": True,
            }
            if context:
                tick["context_chars"] = 1000 + (t % 3)
            if chains and episode == "ep-1" and t in (3, 4, 5):
                role = {3: "failure", 4: "attempt", 5: "recovered"}[t]
                tick.update(chain_id="c1", chain_role=role, outcome="ok" if t == 5 else "error")
                tick["error_class"] = None if t == 5 else "CheckFailed"
            if chains and episode == "ep-2" and t in (6, 7, 8):
                role = {6: "failure", 7: "attempt", 8: "death" if dies else "recovered"}[t]
                tick.update(chain_id="c2", chain_role=role, outcome="error" if t < 8 else ("death" if dies else "ok"))
                tick["error_class"] = "Fatal" if t < 8 or dies else None
                tick["trap"] = "fatal"
            records.append(tick)
            if dies and t == 8:
                break
        end = {"kind": "episode_end", "episode": episode, "ts": ts + 1, "ticks": 10}
        end.update({"outcome": "death", "reason": "fatal action"} if dies else {"outcome": "success", "solved": True})
        records.append(end)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


class Session:
    """A session folder with evidence, auditor doubles and a config, and a way to run the step in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "session"
        self.evidence = self.dir / "evidence"
        self.evidence.mkdir(parents=True)
        (self.evidence / "report.json").write_text(json.dumps({"pass": False, "ticksObserved": 19}))
        write_trace(self.evidence / "trace.jsonl")
        (self.evidence / "comparison.json").write_text(
            json.dumps({"baseline": {"p50": 1.0}, "finetuned": {"p50": 0.8}})
        )
        (root / "notes.md").write_text("Architect: death traces must be raw.\n")
        self.script = root / "auditor-double"
        self.script.write_text(DOUBLE.format(python=sys.executable))
        self.script.chmod(0o755)
        self.auditors: dict[str, dict[str, Any]] = {}
        self.params: dict[str, Any] = {
            "stage": "baseline",
            "auditors": ["first", "second"],
            "report": "evidence/report.json",
            "trace": "evidence/trace.jsonl",
            "notes": "{project}/notes.md",
            "timeout": 20,
        }

    def double(self, name: str, plan: list[str], *, by_file: bool = False, **extra: Any) -> Path:
        """Configure auditor ``name`` as the CLI double answering ``plan`` (one mode per call)."""
        log = self.root / f"log-{name}"
        log.mkdir(exist_ok=True)
        plan_path = self.root / f"plan-{name}.json"
        plan_path.write_text(json.dumps(plan))
        command = [str(self.script), str(plan_path), str(log)] + (["{prompt_file}"] if by_file else [])
        self.auditors[name] = {"kind": "cli", "command": command, **extra}
        return log

    def context(self, services: dict[str, ServiceInfo] | None = None, attempt: int = 1) -> StepContext:
        """The step's context as the engine builds it, with the auditors written to the run's config."""
        config = self.root / "config.toml"
        config.write_text(toml_auditors(self.auditors))
        return StepContext(
            session_id="test",
            session_dir=self.dir,
            project_dir=self.root,
            stage="B",
            step="audit",
            kind="audit",
            attempt=attempt,
            artifacts_dir=self.dir / "artifacts" / "B" / "audit",
            params=self.params,
            services=services or {},
            config_path=config,
        )

    def run(
        self, services: dict[str, ServiceInfo] | None = None, attempt: int = 1
    ) -> tuple[dict[str, Any], AuditOutcome]:
        ctx = self.context(services, attempt)
        summary = run(ctx)
        return summary, load_outcome(ctx.artifacts_dir / "verdict.json")

    def prompts(self, name: str) -> list[str]:
        log = self.root / f"log-{name}"
        return [(log / f"call-{i}.txt").read_text() for i in range(len(list(log.glob("call-*.txt"))))]


def toml_auditors(auditors: dict[str, dict[str, Any]]) -> str:
    return tomli_w.dumps({"auditors": auditors, "stages": {}})


# -- the builders themselves -----------------------------------------------------------------------------------
def test_trace_builder_writes_canonical_records(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    write_trace(path)
    records = [parse_record(json.loads(line)) for line in path.read_text().splitlines()]
    assert [r.kind for r in records].count("episode_end") == 2
    roles = [getattr(r, "chain_role", None) for r in records]
    assert {"failure", "attempt", "recovered", "death"} <= set(roles)


def test_double_answers_a_verdict_the_parser_accepts(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.double("x", ["go"])
    command = session.auditors["x"]["command"]
    sha = "ab" * 32
    prompt = f"packet_sha256: `{sha}`\n"
    out = subprocess.run(command, input=prompt, capture_output=True, text=True, check=True).stdout
    parsed = parse_verdict(out, ["death_traces", "context_profile"], sha)
    assert isinstance(parsed, ParsedVerdict) and parsed.verdict == "GO"
    assert session.prompts("x") == [prompt]
