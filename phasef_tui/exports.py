"""Copy and export from the TUI: a trace record, a recovery chain, a gate's verdict, a filtered slice of a trace.

Copies go to the terminal's clipboard through OSC 52 (``App.copy_to_clipboard``), which works over SSH too.
Exports are Markdown (to read, paste in a ticket) or JSON (to process), written atomically into the session's
``exports/`` folder (``./phasef-exports/`` for a trace viewed alone), never over an earlier export.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.fsio import atomic_write_text
from widgets.session_view import GateView

SLICE_LIMIT = 10_000
"""Records of a trace slice exported at most (the file says when the slice was longer)."""
FORMATS = ("md", "json")


# -- where ---------------------------------------------------------------------------------------------------------
def export_folder(source: Any) -> Path:
    """``source.export_dir`` when set, else ``<session>/exports``, else ``./phasef-exports``."""
    explicit = getattr(source, "export_dir", None)
    if explicit is not None:
        return Path(explicit)
    session_dir = getattr(source, "session_dir", None)
    if session_dir is not None:
        return Path(session_dir) / "exports"
    return Path.cwd() / "phasef-exports"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "export"


def write_export(folder: Path, stem: str, fmt: str, text: str, now: datetime | None = None) -> Path:
    """``<folder>/<stem>-<UTC time>.<fmt>``, a new file (a number added if that name exists)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    base = f"{_slug(stem)}-{stamp}"
    path = folder / f"{base}.{fmt}"
    n = 2
    while path.exists():
        path = folder / f"{base}-{n}.{fmt}"
        n += 1
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    return path


def as_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str)


def _fence(text: str, lang: str = "") -> list[str]:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return [f"{ticks}{lang}", text, ticks]


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


# -- one record ----------------------------------------------------------------------------------------------------
def record_text(record: Any, raw: str) -> str:
    """A record as the clipboard gets it: indented JSON, or the raw line when it is not a JSON object."""
    return as_json(record) if isinstance(record, dict) else raw


# -- a recovery chain ----------------------------------------------------------------------------------------------
def chain_doc(trace: str, name: str, lines: Sequence[int], records: Sequence[Any]) -> dict[str, Any]:
    ticks: list[dict[str, Any]] = []
    for line, rec in zip(lines, records, strict=True):
        readable = isinstance(rec, dict)
        ticks.append({"line": line + 1, "record": rec if readable else None, "problem": None if readable else str(rec)})
    good = [t["record"] for t in ticks if t["record"] is not None]
    roles = [r.get("chain_role") for r in good]
    return {
        "schema": "phasef.chain_export/1",
        "trace": trace,
        "chain": name,
        "ticks": len(ticks),
        "ends": roles[-1] if roles else None,
        "recovery": sorted({str(r["recovery"]) for r in good if r.get("recovery")}),
        "records": ticks,
    }


def _markdown_head(title: str, trace: str, size: str) -> list[str]:
    """The title of an exported Markdown file, then the trace it came from and how much of it."""
    return [f"# {title}", "", f"- trace: `{trace}`", size]


def chain_markdown(doc: dict[str, Any]) -> str:
    recovered = f", recovered by: {', '.join(doc['recovery'])}" if doc["recovery"] else ""
    size = f"- ticks: {doc['ticks']}, ends: **{doc['ends'] or 'open'}**{recovered}"
    out = [*_markdown_head(f"Recovery chain `{doc['chain']}`", doc["trace"], size), ""]
    for n, tick in enumerate(doc["records"], 1):
        rec = tick["record"]
        out.append(f"## {n}. line {tick['line']}")
        out.append("")
        if rec is None:
            out += [f"- unreadable: {tick['problem']}", ""]
            continue
        facts = [
            ("episode", rec.get("episode")),
            ("tick", rec.get("tick")),
            ("actor", rec.get("actor")),
            ("role", rec.get("chain_role")),
            ("outcome", rec.get("outcome")),
            ("error", rec.get("error_class")),
            ("trap", rec.get("trap")),
            ("recovery", rec.get("recovery")),
            ("schema error", rec.get("schema_error")),
        ]
        out += [f"- {k}: `{v}`" for k, v in facts if v is not None]
        if rec.get("action") is not None:
            out += ["", "action:", "", *_fence(json.dumps(rec["action"], ensure_ascii=False), "json")]
        if rec.get("raw_output"):
            out += ["", "raw output:", "", *_fence(str(rec["raw_output"]))]
        if rec.get("observation"):
            out += ["", "observation:", "", *_fence(str(rec["observation"]))]
        out.append("")
    return "\n".join(out)


# -- a gate's verdict ------------------------------------------------------------------------------------------------
def verdict_doc(gate: GateView, session: str | None = None) -> dict[str, Any]:
    """The gate, its auditors' verdicts and the evidence they judged, each item with its sha256."""
    return {
        "schema": "phasef.verdict_export/1",
        "session": session,
        "gate": gate.id,
        "title": gate.title,
        "state": gate.state,
        "prompt": gate.prompt,
        "audit_verdict": gate.audit_verdict,
        "evidence_sha256": gate.evidence_sha256,
        "evidence": [{"name": e.name, "path": e.path, "sha256": e.sha256} for e in gate.evidence],
        "verdicts": [
            {
                "auditor": v.auditor,
                "role": v.role,
                "verdict": v.verdict,
                "model": v.model,
                "judged_sha256": v.judged_sha256,
                "findings": list(v.findings),
                "blockers": list(v.blockers),
                "error": v.error,
            }
            for v in gate.verdicts
        ],
        "decision": {
            "decision": gate.decision,
            "operator": gate.operator,
            "reason": gate.reason,
            "decided_at": gate.decided_at,
            "key_fingerprint": gate.key_fingerprint,
            "override": gate.override,
            "refusals": list(gate.refusals),
        },
    }


def verdict_markdown(doc: dict[str, Any]) -> str:
    out = [
        f"# Gate `{doc['gate']}`" + (f": {doc['title']}" if doc["title"] else ""),
        "",
        f"- state: **{doc['state']}**; audit verdict: **{doc['audit_verdict'] or 'none bound'}**",
    ]
    if doc["session"]:
        out.append(f"- session: `{doc['session']}`")
    if doc["prompt"]:
        out.append(f"- prompt: {doc['prompt']}")
    d = doc["decision"]
    if d["decision"]:
        who = f"{d['operator']}" + (f" [{d['key_fingerprint']}]" if d["key_fingerprint"] else "")
        override = " (overrides the audit)" if d["override"] else ""
        out.append(f"- decision: **{d['decision'].upper()}** by {who} at {d['decided_at']}{override}")
        if d["reason"]:
            out.append(f"- reason: {d['reason']}")
    for refusal in d["refusals"]:
        out.append(f"- refused: {refusal}")
    out += ["", "## Verdicts", ""]
    if not doc["verdicts"]:
        out.append("- none bound to this gate")
    for v in doc["verdicts"]:
        model = f" ({v['model']})" if v["model"] else ""
        out.append(f"### {v['auditor']}{model}, {v['role'] or 'auditor'}: **{v['verdict'] or 'no answer'}**")
        out.append("")
        if v["judged_sha256"]:
            out.append(f"- judged evidence sha256: `{v['judged_sha256']}`")
        out += [f"- finding: {f}" for f in v["findings"]]
        out += [f"- blocker: {b}" for b in v["blockers"]]
        if v["error"]:
            out.append(f"- error: {v['error']}")
        out.append("")
    out += ["## Evidence", "", f"Bundle sha256: `{doc['evidence_sha256'] or 'n/a'}`", ""]
    out += ["| item | path | sha256 |", "|---|---|---|"]
    for e in doc["evidence"]:
        out.append(f"| {_cell(e['name'])} | `{_cell(e['path'])}` | `{e['sha256'] or 'MISSING'}` |")
    return "\n".join(out)


# -- a filtered slice of a trace -------------------------------------------------------------------------------------
def slice_doc(
    trace: str, filters: Sequence[str], lines: Sequence[int], records: Sequence[Any], total: int
) -> dict[str, Any]:
    return {
        "schema": "phasef.trace_slice/1",
        "trace": trace,
        "filters": sorted(filters),
        "records_in_slice": total,
        "records_exported": len(lines),
        "truncated": total > len(lines),
        "records": [
            {"line": line + 1, "record": rec if isinstance(rec, dict) else None}
            | ({} if isinstance(rec, dict) else {"problem": str(rec)})
            for line, rec in zip(lines, records, strict=True)
        ],
    }


def slice_markdown(doc: dict[str, Any]) -> str:
    scope = ", ".join(doc["filters"]) or "all records"
    cut = f" of {doc['records_in_slice']:,} (cut at {SLICE_LIMIT:,})" if doc["truncated"] else ""
    out = _markdown_head(f"Trace slice: {scope}", doc["trace"], f"- records: {doc['records_exported']:,}{cut}")
    out += ["", "| line | kind | episode | tick | actor | outcome | error | chain | recovery |"]
    out.append("|---:|---|---|---:|---|---|---|---|---|")
    for item in doc["records"]:
        rec = item["record"]
        if rec is None:
            out.append(f"| {item['line']} | unreadable: {_cell(item['problem'])} | | | | | | | |")
            continue
        chain = f"{rec.get('chain_id')}:{rec.get('chain_role')}" if rec.get("chain_id") else None
        cells = [rec.get(k) for k in ("kind", "episode", "tick", "actor", "outcome", "error_class")]
        cells += [chain, rec.get("recovery")]
        out.append(f"| {item['line']} | " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(out)


def render(doc: dict[str, Any], fmt: str, markdown: Any) -> str:
    return as_json(doc) if fmt == "json" else markdown(doc)
