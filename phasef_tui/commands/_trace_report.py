"""The reports of ``phasef trace``: the plain-text analysis, its JSON with chains streamed from the compact store,
and the summary of a folder import."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from pipeline.traces.analysis import ChainStore, ChainSummary, TraceAnalysis

LIST_LIMIT = 50
"""Items listed per section; the rest are counted (``--json`` has all)."""


def render_folder_summary(summary: Any, out: Path | str) -> str:
    formats = ", ".join(f"{name} {count}" for name, count in sorted(summary.formats.items())) or "none"
    lines = [
        f"{summary.folder}: {summary.files} files ({formats}), {summary.records} records, {summary.episodes} "
        f"episodes, {summary.ticks} ticks -> {out}",
        f"skipped files: {summary.skipped_count}; bad lines: {summary.bad_line_count}; "
        f"other files not read: {summary.not_traces}",
    ]
    for problem in (summary.skipped + summary.bad_lines)[:LIST_LIMIT]:
        lines.append(f"  {problem}")
    hidden = summary.skipped_count + summary.bad_line_count - LIST_LIMIT
    if hidden > 0:
        lines.append(f"  … {hidden} more")
    return "\n".join(lines) + "\n"


def write_analysis_json(a: TraceAnalysis, chains: ChainStore, out: TextIO) -> None:
    """The analysis as indented JSON with its chains written one at a time from the compact store (a large trace
    has hundreds of thousands: built as objects all at once they would take more memory than the whole scan)."""
    head, marker, tail = a.model_dump_json(indent=2).partition('\n  "chains": [],')
    if not marker:
        raise ValueError("the analysis JSON has no empty chains list")
    out.write(head)
    out.write('\n  "chains": [')
    for n, item in enumerate(chains.json_items()):
        out.write(",\n    " if n else "\n    ")
        out.write(item.decode())
    out.write("\n  ]," if len(chains) else "],")
    out.write(tail)
    out.write("\n")


def _section(lines: list[str], title: str, items: list[Any], fmt: Any) -> None:
    lines.append(f"{title}: {len(items)}")
    for item in items[:LIST_LIMIT]:
        lines.append(f"  {fmt(item)}")
    if len(items) > LIST_LIMIT:
        lines.append(f"  … {len(items) - LIST_LIMIT} more (use --json for all)")


def render_analysis(a: TraceAnalysis, chains: Sequence[ChainSummary] | None = None) -> str:
    """Plain-text report of an analysis (no colour, so it pipes and diffs cleanly); ``chains`` replaces
    ``a.chains`` (a ``ChainStore`` of a large trace)."""
    all_chains: Sequence[ChainSummary] = a.chains if chains is None else chains
    lines = [
        f"trace: {a.file}",
        f"sha256: {a.sha256}",
        f"records: {a.records}   episodes: {a.episodes}   ticks: {a.ticks}   bad lines: {len(a.bad_lines)}",
    ]
    from pipeline.traces.analysis import ChainStore

    if isinstance(all_chains, ChainStore):
        recovered, died, _ = all_chains.by_outcome
    else:
        recovered = sum(1 for c in all_chains if c.outcome == "recovered")
        died = sum(1 for c in all_chains if c.outcome == "death")
    lines.append(
        f"recovery chains: {len(all_chains)} ({recovered} recovered, {died} death, "
        f"{len(all_chains) - recovered - died} open)"
    )
    for c in all_chains[:LIST_LIMIT]:
        tries = f"{c.attempts} attempt{'s' if c.attempts != 1 else ''}"
        if c.outcome == "recovered":
            seconds = f" / {c.seconds_to_recover:.3f} s" if c.seconds_to_recover is not None else ""
            mechanism = f" by {c.mechanism}" if c.mechanism else ""
            ending = f"recovered after {tries} in {c.ticks_to_recover} ticks{seconds}{mechanism}"
        else:
            ending = f"{c.outcome} after {tries}"
        lines.append(
            f"  {c.chain_id} [{c.episode}] ticks {c.start_tick}-{c.end_tick} {c.failure_class or '?'}: {ending}"
        )
    if len(all_chains) > LIST_LIMIT:
        lines.append(f"  … {len(all_chains) - LIST_LIMIT} more (use --json for all)")
    mttr_ticks = f"{a.mttr_ticks:.2f} ticks" if a.mttr_ticks is not None else "n/a"
    mttr_seconds = f"{a.mttr_seconds:.3f} s" if a.mttr_seconds is not None else "n/a"
    lines.append(f"MTTR: {mttr_ticks} / {mttr_seconds}")
    _section(
        lines,
        "thrashing",
        a.thrash,
        lambda t: f"[{t.episode}] ticks {t.start_tick}-{t.end_tick}: {t.action} failed {t.count}x with {t.error_class}",
    )
    _section(
        lines,
        "oscillations",
        a.oscillations,
        lambda o: f"[{o.episode}] ticks {o.start_tick}-{o.end_tick}: {' <-> '.join(o.actions)}",
    )
    _section(lines, "deadlocks", a.deadlocks, lambda d: f"[{d.episode}] ticks {d.start_tick}-{d.end_tick}: {d.reason}")
    _section(
        lines,
        "deaths",
        a.deaths,
        lambda d: (
            f"[{d.episode}] tick {d.tick}: {d.reason} ({d.error_class or 'no error class'}); last ticks {d.last_ticks}"
        ),
    )
    traps = ", ".join(f"{k}={v}" for k, v in a.traps.items()) or "none"
    lines.append(f"trap interactions: {traps}")
    errors = ", ".join(f"{k}={v}" for k, v in a.error_classes.items()) or "none"
    lines.append(f"error classes: {errors}")
    ctx = a.context
    verdict = "bounded (O(1))" if ctx.bounded else "NOT shown bounded"
    lines.append(
        f"context: {ctx.samples} samples, mean {ctx.mean_chars:.0f} chars, max {ctx.max_chars}, "
        f"early {ctx.early_mean:.0f} -> late {ctx.late_mean:.0f}, growth {ctx.growth_per_tick:+.2f} chars/tick: "
        f"{verdict}"
    )
    lines.append(f"bad lines: {len(a.bad_lines)}")
    lines.extend(f"  {bad}" for bad in a.bad_lines)
    return "\n".join(lines) + "\n"
