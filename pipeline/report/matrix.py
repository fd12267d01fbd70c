"""The model matrix (plan: ``bench:model-matrix-report``): the compared metrics for every model of a session.

One column per evaluated run, one row per metric, each computed from the run's dirty trace exactly as the
baseline-vs-fine-tuned comparison computes it. Runs are listed in ``params.runs`` or found under the session
(``artifacts/**/eval_report.json``). A run whose task set or gate config differs from the reference run (the first
one) is still shown but marked not comparable; a run that cannot be read is listed with the reason, and the others
are still reported.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.jobs.context import StepContext, StepFailed, parse_params
from pipeline.report.compare import METRICS, RunData, RunProblem, RunRef, load_run, write_outputs
from pipeline.report.paths import relative_text, session_relative

MATRIX_SCHEMA = "phasef.model_matrix/1"


class MatrixParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    runs: list[RunRef] = Field(default_factory=list, description="the runs, in column order; default: discover")
    discover: str = Field(
        default="artifacts/**/eval_report.json", description="session-relative glob used when runs is empty"
    )
    out: str = Field(default="report", description="folder for model_matrix.json/.md, session-relative")


def discover_runs(session_dir: Path, pattern: str) -> list[RunRef]:
    return [RunRef(report=str(p)) for p in sorted(session_dir.glob(pattern)) if p.is_file()]


def build_matrix(refs: list[RunRef], resolve: Callable[[str], Path], session_dir: Path | None = None) -> dict[str, Any]:
    """The matrix document; files inside ``session_dir`` are named relative to it."""
    columns: list[dict[str, Any]] = []
    loaded: list[RunData] = []
    for n, ref in enumerate(refs):
        try:
            run = load_run(f"run{n + 1}", ref, resolve)
        except RunProblem as exc:
            columns.append(
                {
                    "name": ref.name or Path(ref.report).parent.name,
                    "report": session_relative(ref.report, session_dir),
                    "error": relative_text(str(exc), session_dir),
                }
            )
            continue
        loaded.append(run)
        columns.append(run.summary(session_dir))
    _tell_apart(columns)
    reference = loaded[0] if loaded else None
    for col, run in zip([c for c in columns if "error" not in c], loaded, strict=True):
        same_tasks = reference is not None and run.task_set_hash == reference.task_set_hash
        same_gates = reference is not None and run.gate_config_hash == reference.gate_config_hash
        col["comparable"] = bool(same_tasks and same_gates and run.task_set_hash and run.gate_config_hash)
        col["not_comparable_because"] = [
            r
            for r, bad in (
                ("task set differs from the reference run", not same_tasks or not run.task_set_hash),
                ("gate config differs from the reference run", not same_gates or not run.gate_config_hash),
            )
            if bad
        ]
    rows = [
        {
            "metric": spec.key,
            "label": spec.label,
            "unit": spec.unit,
            "better": spec.better,
            "values": [c.get("metrics", {}).get(spec.key) for c in columns],
        }
        for spec in METRICS
    ]
    return {
        "schema": MATRIX_SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reference": next((c["name"] for c in columns if "error" not in c), None),
        "columns": columns,
        "rows": rows,
    }


def _tell_apart(columns: list[dict[str, Any]]) -> None:
    """Two runs of the same model (the base, then base + adapter): add the shortest folder tail that differs."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for col in columns:
        by_name.setdefault(col["name"], []).append(col)
    for name, cols in by_name.items():
        if len(cols) < 2:
            continue
        parents = [Path(c["report"]).parent.parts for c in cols]
        depth = 1
        while depth < max(len(p) for p in parents) and len({p[-depth:] for p in parents}) < len(cols):
            depth += 1
        for col, parts in zip(cols, parents, strict=True):
            col["name"] = f"{name} [{'/'.join(parts[-depth:])}]"


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    return str(value)


def render_matrix(doc: dict[str, Any]) -> str:
    cols = doc["columns"]
    names = [c["name"] for c in cols]
    lines = [
        "# Model matrix",
        "",
        f"Reference run: **{doc['reference'] or 'none'}** (every column is compared with its task set and gates).",
        "",
        "| metric | unit | better | " + " | ".join(names) + " |",
        "|---|---|---|" + "---:|" * len(names),
    ]
    for row in doc["rows"]:
        cells = " | ".join(_cell(v) for v in row["values"])
        lines.append(f"| {row['label']} | {row['unit']} | {row['better']} | {cells} |")
    lines.append("| verdict | | | " + " | ".join(str(c.get("verdict") or "n/a") for c in cols) + " |")
    lines.append(
        "| comparable | | | "
        + " | ".join("error" if "error" in c else ("yes" if c.get("comparable") else "**no**") for c in cols)
        + " |"
    )
    notes = [f"- {c['name']}: {c['error']}" for c in cols if "error" in c]
    notes += [
        f"- {c['name']}: {'; '.join(c['not_comparable_because'])}" for c in cols if c.get("not_comparable_because")
    ]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def matrix_step(ctx: StepContext) -> dict[str, Any]:
    """Builtin step: write ``<session>/report/model_matrix.{json,md}`` (and a copy in the step's artifacts)."""
    params = parse_params(MatrixParams, ctx.params)
    refs = params.runs or discover_runs(ctx.session_dir, params.discover)
    if not refs:
        raise StepFailed(f"no evaluated runs: params.runs is empty and nothing matches {params.discover!r}")
    doc = build_matrix(refs, ctx.resolve, ctx.session_dir)
    written = write_outputs(doc, render_matrix(doc), [ctx.resolve(params.out), ctx.artifacts_dir], "model_matrix")
    ctx.log("model matrix written to " + str(written[0]))
    cols = doc["columns"]
    summary = {
        "runs": len(cols),
        "unreadable": [c["name"] for c in cols if "error" in c],
        "not_comparable": [c["name"] for c in cols if "error" not in c and not c.get("comparable")],
        "reference": doc["reference"],
        "matrix": session_relative(written[0], ctx.session_dir),
    }
    ctx.emit("model_matrix", **summary)
    if len(summary["unreadable"]) == len(cols):
        raise StepFailed("no run could be read: " + "; ".join(c["error"] for c in cols))
    return summary
