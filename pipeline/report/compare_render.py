"""The comparison as Markdown (``comparison.md``), and writing a report's JSON and Markdown into its folders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.report import criteria


# -- output ----------------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e12:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def render_markdown(doc: dict[str, Any]) -> str:
    base, fine = doc["baseline"], doc["finetuned"]
    lines = ["# Baseline vs fine-tuned", ""]
    if doc.get("pass_criteria") is not None:
        lines += criteria.render_markdown(doc)
    lines += [
        f"- baseline: **{base.get('name')}** — `{base.get('report')}`",
        f"- fine-tuned: **{fine.get('name')}** — `{fine.get('report')}`",
        f"- status: **{doc['status']}**",
        "",
    ]
    if doc["status"] == "refused":
        lines += ["## Refused", "", "The runs were not judged alike, so no delta is shown:", ""]
        lines += [f"- {r}" for r in doc["refusal"]]
        return "\n".join(lines) + "\n"
    noise = doc["noise"]
    lines += [
        f"Task set `{base['taskSetHash'][:12]}…`, gate config `{base['gateConfigHash'][:12]}…` "
        "(identical in both runs). "
        f"{doc['pairs']['count']} episode pairs; noise: paired bootstrap, {noise['resamples']} resamples, "
        f"seed {noise['seed']}, {noise['confidence']:.0%} interval.",
        "",
        "## Delta table",
        "",
        "| metric | unit | baseline | fine-tuned | delta | direction | beyond noise | interval | sign test p |",
        "|---|---|---:|---:|---:|---|---|---|---:|",
    ]
    for d in doc["deltas"]:
        ci = d["ci"]
        interval = f"{ci[0]:+.3g} .. {ci[1]:+.3g}" if ci else "n/a"
        delta = "n/a" if d["delta"] is None else f"{d['delta']:+.4g}"
        beyond = "yes" if d["beyond_noise"] else "no"
        lines.append(
            f"| {d['label']} | {d['unit']} | {_fmt(d['baseline'])} | {_fmt(d['finetuned'])} | {delta} | "
            f"{d['direction']} | {beyond} | {interval} | {d['sign_test']['p_value']:.3g} |"
        )
    flips = doc["flips"]
    lines += ["", "## Flipped episodes", ""]
    any_flip = False
    for kind, title in (
        ("solved", "unsolved → solved"),
        ("unsolved", "solved → unsolved"),
        ("survived", "died → survived"),
        ("died", "survived → died"),
    ):
        for f in flips[kind]:
            any_flip = True
            lines.append(f"- {title}: `{f['task']}` ({f['baseline_episode']} → {f['finetuned_episode']})")
    if not any_flip:
        lines.append("- none")
    ev = doc["evidence"]
    lines += ["", "## Evidence completeness", ""]
    lines.append(f"- complete: **{'yes' if ev['complete'] else 'no'}**" + "".join(f"; {m}" for m in ev["missing"]))
    for role in ("baseline", "finetuned"):
        e = ev[role]
        lines.append(
            f"- {role}: {e['death_traces']} death trace(s), {e['recovered_chains']}/{e['recovery_chains']} chains "
            f"recovered, {e['trap_interactions']} trap interaction(s), context profile "
            f"{'present' if e['context_profile'] else 'missing'} ({e['context_samples']} samples, growth "
            f"{_fmt(e['context_growth_per_tick'])} chars/tick)"
        )
    lines += ["", "## Residual blockers", ""]
    lines += [f"- {b}" for b in doc["residual_blockers"]] or ["- none"]
    if doc["self_check"]:
        lines += ["", "## Metric self-check disagreements", ""] + [f"- {p}" for p in doc["self_check"]]
    return "\n".join(lines) + "\n"


def write_outputs(doc: dict[str, Any], markdown: str, folders: Sequence[Path], stem: str) -> list[Path]:
    """``<stem>.json`` and ``<stem>.md`` into every folder (atomically); the paths written, JSON first."""
    from pipeline.fsio import atomic_write_text

    text_json = json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
    written = []
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".json", text_json), (".md", markdown)):
            path = folder / f"{stem}{suffix}"
            atomic_write_text(path, text)
            written.append(path)
    return written
