"""``phasef trace``: import foreign traces into the canonical schema, analyze a trace, view one.

``stats`` exits 0 whenever it could read the file, bad lines included (they are part of the report, each as
``file:line: reason``), and 2 when it could not read it at all (missing, a directory, unreadable, or a document
of no known format).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from pipeline.traces.analysis import ChainStore, ChainSummary, TraceAnalysis

LIST_LIMIT = 50
FORMAT_HELP = (
    "its format: phasef, swe-agent, openhands, mini-swe-agent, tau-bench or inspect-ai (detected if not given)"
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "trace",
        help="import, analyze or view dirty traces",
        description="Work with dirty traces: import other agents' formats, analyze, view.",
    )
    trace_sub = parser.add_subparsers(dest="trace_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda _args: _usage(parser))

    imp = trace_sub.add_parser(
        "import",
        help="convert a foreign trace into canonical JSONL",
        description="Convert a trace written by another agent (SWE-agent .traj, OpenHands events, mini-swe-agent, "
        "tau-bench, inspect_ai .json/.eval) into the canonical dirty-trace JSONL.",
    )
    imp.add_argument("path", type=Path, help="the trace to import")
    imp.add_argument("--from", dest="fmt", metavar="FORMAT", help=FORMAT_HELP)
    imp.add_argument("-o", "--output", type=Path, required=True, help="canonical JSONL file to write")
    imp.set_defaults(func=_import)

    stats = trace_sub.add_parser(
        "stats",
        help="analyze a trace: recovery chains, thrash, oscillation, deadlocks, deaths, MTTR, context profile",
        description="Analyze a canonical or importable trace and list every bad line as file:line: reason.",
    )
    stats.add_argument("file", type=Path)
    stats.add_argument("--json", action="store_true", help="print the analysis as JSON")
    stats.add_argument("--from", dest="fmt", metavar="FORMAT", help=FORMAT_HELP)
    stats.add_argument("--deadlock-window", type=int, help="ticks without progress that make a deadlock")
    stats.add_argument("--thrash-min", type=int, help="failures of one action that make thrashing")
    stats.add_argument("--max-line-mb", type=float, help="lines longer than this are reported and skipped")
    stats.set_defaults(func=_stats)

    view = trace_sub.add_parser("view", help="browse a trace in the terminal", description="Browse a trace.")
    view.add_argument("file", type=Path)
    view.add_argument("--follow", action="store_true", help="keep following the file as it grows")
    view.set_defaults(func=_view)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _unknown_format(command: str, fmt: str | None) -> int | None:
    from pipeline.traces.importers import FORMATS

    if fmt is None or fmt in FORMATS:
        return None
    print(f"phasef trace {command}: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", file=sys.stderr)
    return 2


def _cannot_read(command: str, path: Path, exc: BaseException) -> int:
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    print(f"phasef trace {command}: cannot read {path}: {detail}", file=sys.stderr)
    return 2


def _import(args: argparse.Namespace) -> int:
    import orjson

    from pipeline.traces.importers import UnknownFormat, detect_format, import_trace

    path: Path = args.path
    if (code := _unknown_format("import", args.fmt)) is not None:
        return code
    try:
        fmt = args.fmt or detect_format(path)
        records, bad_lines = import_trace(path, fmt)
    except (OSError, UnknownFormat) as exc:
        return _cannot_read("import", path, exc)
    out: Path = args.output
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as fh:
        for record in records:
            fh.write(orjson.dumps(record) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    for bad in bad_lines:
        print(bad, file=sys.stderr)
    episodes = len({(r.get("run_id"), r["episode"]) for r in records})
    ticks = sum(1 for r in records if r["kind"] == "tick")
    print(
        f"{path} ({fmt}): {len(records)} records, {episodes} episodes, {ticks} ticks -> {out}"
        + (f"; {len(bad_lines)} bad" if bad_lines else ""),
        file=sys.stderr,
    )
    return 0 if records or not bad_lines else 1


def _stats(args: argparse.Namespace) -> int:
    from pipeline.traces.analysis import analyze_compact
    from pipeline.traces.importers import UnknownFormat

    path: Path = args.file
    if (code := _unknown_format("stats", args.fmt)) is not None:
        return code
    try:
        options: dict[str, Any] = {}  # unset options keep the analysis defaults
        if args.deadlock_window is not None:
            options["deadlock_window"] = args.deadlock_window
        if args.thrash_min is not None:
            options["thrash_min"] = args.thrash_min
        if args.max_line_mb is not None:
            options["max_line_bytes"] = max(1, int(args.max_line_mb * 2**20))
        result, chains = analyze_compact(path, fmt=args.fmt, **options)
    except (OSError, UnknownFormat) as exc:
        return _cannot_read("stats", path, exc)
    if args.json:
        write_analysis_json(result, chains, sys.stdout)
    else:
        sys.stdout.write(render_analysis(result, chains))
    return 0


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


def _view(args: argparse.Namespace) -> int:
    from phasef_tui.trace_view import run_trace_view

    return int(run_trace_view(args.file, args.follow))


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
