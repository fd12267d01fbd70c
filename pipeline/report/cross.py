"""Compare any two evaluated runs across sessions (``phasef compare A B``).

A and B are each a session (``SESSION``: its last evaluation, or the last evaluation step both sessions ran), one
evaluation of a session (``SESSION:STAGE.step``, or ``SESSION:step`` when the step name is unique) or the path of an
``eval_report.json``. The comparison itself is the one of plan Stage E (``pipeline.report.compare``), run with A in
the baseline role and B in the candidate (fine-tuned) role: episodes paired by task, a paired bootstrap interval
and an exact sign test per metric, flipped episodes and B's residual blockers. It is refused, with the reasons,
when the two runs did not use the same task set and gate config (or a trace changed since its report).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.journal import JOURNAL_NAME
from pipeline.report.compare import CompareParams, NoiseParams, RunRef, build_comparison, render_markdown
from pipeline.report.eval_report import file_sha256
from pipeline.report.sessions import EvalStep, eval_steps
from pipeline.state import load_state

CROSS_SCHEMA = "phasef.cross_comparison/1"


class RefError(Exception):
    """A run reference that names no evaluation report; the message says what exists instead."""


@dataclass(frozen=True)
class ResolvedRun:
    ref: str
    report: Path
    session: str | None = None
    step: str | None = None
    recorded_sha256: str | None = None
    """The report's hash as the session journaled it when the step succeeded (None when not recorded)."""

    @property
    def label(self) -> str:
        if self.session and self.step:
            return f"{self.session}:{self.step}"
        return self.session or str(self.report)

    def describe(self) -> dict[str, Any]:
        current = file_sha256(self.report) if self.report.is_file() else None
        changed = self.recorded_sha256 is not None and current is not None and current != self.recorded_sha256
        return {
            "ref": self.ref,
            "session": self.session,
            "step": self.step,
            "report": str(self.report),
            "report_sha256": current,
            "changed_since_session": changed,
        }


def _session_dir(text: str, sessions_root: Path) -> Path | None:
    for candidate in (Path(text), sessions_root / text):
        if (candidate / JOURNAL_NAME).is_file():
            return candidate.resolve()
    return None


def _session_evals(session_dir: Path) -> list[EvalStep]:
    return eval_steps(session_dir, load_state(session_dir))


def _recorded_hash(ev: EvalStep) -> str | None:
    for name, digest in ev.outputs.items():
        if Path(name).name == ev.report.name and isinstance(digest, str) and len(digest) == 64:
            return digest
    return None


def _pick_step(session_dir: Path, step: str, evals: list[EvalStep]) -> EvalStep:
    exact = [e for e in evals if e.key == step]
    by_name = [e for e in evals if e.key.split(".", 1)[1] == step]
    chosen = exact or by_name
    if len(chosen) == 1:
        return chosen[0]
    listed = ", ".join(e.key for e in evals) or "none"
    if len(chosen) > 1:
        raise RefError(f"{session_dir.name}:{step}: ambiguous; say STAGE.step ({listed})")
    raise RefError(f"{session_dir.name}: no evaluation step {step!r} that succeeded (evaluations: {listed})")


def _from_session(ref: str, session_dir: Path, step: str | None, evals: list[EvalStep]) -> ResolvedRun:
    if not evals:
        raise RefError(f"{ref}: session {session_dir.name} has no succeeded evaluation step")
    chosen = _pick_step(session_dir, step, evals) if step else evals[-1]
    return ResolvedRun(ref, chosen.report, session_dir.name, chosen.key, _recorded_hash(chosen))


def _from_path(ref: str, path: Path) -> ResolvedRun:
    if path.is_dir():
        reports = sorted(path.glob("*.json"))
        path = next((p for p in reports if p.name == "eval_report.json"), path / "eval_report.json")
    if not path.is_file():
        raise RefError(f"{ref}: no such session or eval report ({path} does not exist)")
    return ResolvedRun(ref, path.resolve())


def resolve_pair(a: str, b: str, sessions_root: Path) -> tuple[ResolvedRun, ResolvedRun]:
    """Both references resolved; two bare sessions use the last evaluation step both ran, when there is one."""
    parsed: list[tuple[str, Path | None, str | None]] = []
    for ref in (a, b):
        session_dir = _session_dir(ref, sessions_root)
        step = None
        if session_dir is None and ":" in ref:
            head, tail = ref.rsplit(":", 1)
            session_dir = _session_dir(head, sessions_root)
            if session_dir is None:
                raise RefError(f"{ref}: no session {head!r} under {sessions_root}")
            step = tail
        parsed.append((ref, session_dir, step))
    evals = {ref: _session_evals(d) for ref, d, _ in parsed if d is not None}
    (ra, da, sa), (rb, db, sb) = parsed
    if da is not None and db is not None and sa is None and sb is None:
        keys_b = {e.key for e in evals[rb]}
        common = [e.key for e in evals[ra] if e.key in keys_b]
        if common:
            sa = sb = common[-1]
    runs = []
    for ref, session_dir, step in ((ra, da, sa), (rb, db, sb)):
        if session_dir is None:
            runs.append(_from_path(ref, Path(ref)))
        else:
            runs.append(_from_session(ref, session_dir, step, evals[ref]))
    return runs[0], runs[1]


def resolve_runs(refs: list[str], sessions_root: Path) -> list[ResolvedRun]:
    """Runs for a cross-session matrix: ``SESSION`` gives every evaluation of the session, ``SESSION:STAGE.step``
    one, a path one report; no reference at all gives every evaluation of every session (oldest session first)."""
    if not refs:
        from pipeline.report.sessions import list_rows

        refs = [row["path"] for row in reversed(list_rows(sessions_root)) if row["evals"]]
    runs: list[ResolvedRun] = []
    for ref in refs:
        session_dir = _session_dir(ref, sessions_root)
        if session_dir is not None:
            evals = _session_evals(session_dir)
            if not evals:
                raise RefError(f"{ref}: session {session_dir.name} has no succeeded evaluation step")
            runs += [ResolvedRun(ref, e.report, session_dir.name, e.key, _recorded_hash(e)) for e in evals]
        elif ":" in ref and _session_dir(ref.rsplit(":", 1)[0], sessions_root) is not None:
            head, step = ref.rsplit(":", 1)
            found = _session_dir(head, sessions_root)
            assert found is not None
            runs.append(_from_session(ref, found, step, _session_evals(found)))
        else:
            runs.append(_from_path(ref, Path(ref)))
    return runs


def matrix_resolved(runs: list[ResolvedRun]) -> dict[str, Any]:
    """The model matrix (``pipeline.report.matrix``) over runs of any sessions; the first run is the reference."""
    from pipeline.report.matrix import build_matrix

    refs = [RunRef(report=str(r.report), trace=_moved_trace(r.report), name=r.label) for r in runs]
    doc = build_matrix(refs, lambda raw: Path(raw))
    for col, run in zip(doc["columns"], runs, strict=True):
        col.update(session=run.session, step=run.step, changed_since_session=run.describe()["changed_since_session"])
    return doc


def compare_resolved(
    a: ResolvedRun, b: ResolvedRun, noise: NoiseParams | None = None, min_ticks: int = 100
) -> dict[str, Any]:
    """The cross-session comparison document (``status``: ``compared`` or ``refused`` with ``refusal`` reasons)."""
    label_a, label_b = f"A {a.label}", f"B {b.label}"
    params = CompareParams(
        baseline=RunRef(report=str(a.report), trace=_moved_trace(a.report), name=label_a),
        finetuned=RunRef(report=str(b.report), trace=_moved_trace(b.report), name=label_b),
        noise=noise or NoiseParams(),
        min_ticks=min_ticks,
    )
    inner = build_comparison(params, lambda raw: Path(raw))
    refusal = list(inner.get("refusal", []))
    for side, run in (("A", a), ("B", b)):
        if run.describe()["changed_since_session"]:
            refusal.append(f"{side}: {run.report} changed since session {run.session} recorded it (step {run.step})")
    status = "refused" if refusal else inner["status"]
    doc: dict[str, Any] = {
        "schema": CROSS_SCHEMA,
        "status": status,
        "refusal": refusal,
        "a": {**a.describe(), **_run_summary(inner.get("baseline"))},
        "b": {**b.describe(), **_run_summary(inner.get("finetuned"))},
        "roles": {"a": "baseline", "b": "candidate (the fine-tuned role: its residual blockers are listed)"},
        "noise": inner.get("noise"),
        "pairs": 0,
        "metrics": [],
    }
    if status != "compared":
        return doc
    doc["pairs"] = inner["pairs"]["count"]
    doc["unpaired"] = {"a": inner["pairs"]["unpaired_baseline"], "b": inner["pairs"]["unpaired_finetuned"]}
    doc["metrics"] = [
        {
            "name": d["metric"],
            "label": d["label"],
            "unit": d["unit"],
            "better": d["better"],
            "a": d["baseline"],
            "b": d["finetuned"],
            "delta": d["delta"],
            "direction": d["direction"],
            "beyond_noise": d["beyond_noise"],
            "ci": d["ci"],
            "sign_test": d["sign_test"],
            "pairs_used": d["pairs_used"],
        }
        for d in inner["deltas"]
    ]
    doc["flips"] = inner["flips"]
    doc["evidence"] = inner["evidence"]
    doc["residual_blockers"] = inner["residual_blockers"]
    doc["self_check"] = inner["self_check"]
    doc["comparison"] = inner
    return doc


def _moved_trace(report: Path) -> str | None:
    """The trace beside a report whose recorded absolute trace path is gone (a moved or copied session folder);
    None to let the comparison find it as recorded. Its hash is still checked against the report."""
    try:
        ref = json.loads(report.read_text(encoding="utf-8")).get("trace")
    except (OSError, ValueError, AttributeError):
        return None
    raw = ref.get("path") if isinstance(ref, dict) else None
    if not isinstance(raw, str) or not Path(raw).is_absolute():
        return None
    recorded, beside = Path(raw), report.parent / Path(raw).name
    if (not recorded.is_relative_to(report.parent) or not recorded.is_file()) and beside.is_file():
        return str(beside)
    return None


def _run_summary(summary: Any) -> dict[str, Any]:
    if not isinstance(summary, dict):
        return {}
    keep = ("name", "model", "verdict", "taskSetHash", "gateConfigHash", "episodes", "trace", "trace_sha256")
    return {k: summary[k] for k in keep if k in summary}


def render_cross_markdown(doc: dict[str, Any]) -> str:
    """Markdown for a person: the Stage E layout, with A and B in place of baseline and fine-tuned."""
    a, b = doc["a"], doc["b"]
    head = [
        f"# Compare {a.get('name') or a['ref']} vs {b.get('name') or b['ref']}",
        "",
        f"- A: `{a['ref']}` — report `{a['report']}`",
        f"- B: `{b['ref']}` — report `{b['report']}`",
        f"- status: **{doc['status']}**",
        "",
    ]
    if doc["status"] != "compared":
        head += ["## Refused", "", "The runs were not judged alike, so no delta is shown:", ""]
        head += [f"- {r}" for r in doc["refusal"]]
        return "\n".join(head) + "\n"
    body = render_markdown(doc["comparison"]).split("\n")
    start = next((i for i, line in enumerate(body) if line.startswith("Task set")), 0)
    text = "\n".join(body[start:])
    text = text.replace("| baseline | fine-tuned |", "| A | B |")
    return "\n".join(head) + "\n" + text
