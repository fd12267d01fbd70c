"""``phasef trace``: import foreign traces into the canonical schema, analyze a trace, view one.

``stats`` exits 0 whenever it could read the file, bad lines included (they are part of the report, each as
``file:line: reason``), and 2 when it could not read it at all (missing, a directory, unreadable, a document
of no known format, or not a regular file: a FIFO, a device or a socket is refused before anything reads it).

``import`` writes its output to a temporary file beside ``-o`` and renames it into place only on success; when
nothing could be imported the old ``-o`` file is left as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from phasef_tui.commands._common import add_json_arg, help_when_bare, is_stdout, open_output, output_name
from phasef_tui.commands._trace_report import LIST_LIMIT, render_analysis, render_folder_summary, write_analysis_json

if TYPE_CHECKING:
    from pipeline.traces.analysis import ChainStore, ChainSummary, TraceAnalysis

__all__ = ["LIST_LIMIT", "register", "render_analysis", "render_folder_summary", "write_analysis_json"]

FORMAT_HELP = (
    "its format: phasef, swe-agent, openhands, mini-swe-agent, tau-bench, inspect-ai, claude-code, codex, aider, "
    "voyager or otel-genai (detected if not given), or jsonl with --map"
)
MAP_HELP = "mapping file (TOML) for a runner's own JSONL: which field is the episode, tick, outcome, ... (--from jsonl)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "trace",
        help="import, analyze or view dirty traces",
        description="Work with dirty traces: import other agents' formats, analyze, view.",
    )
    trace_sub = parser.add_subparsers(dest="trace_command", metavar="SUBCOMMAND")
    help_when_bare(parser)

    imp = trace_sub.add_parser(
        "import",
        help="convert a foreign trace into canonical JSONL",
        description="Convert a trace written by another agent (SWE-agent .traj, OpenHands events, mini-swe-agent, "
        "tau-bench, inspect_ai .json/.eval, Claude Code and Codex CLI sessions, Aider chat histories, Voyager "
        "events, OTLP JSON GenAI spans) into the canonical dirty-trace JSONL.",
    )
    imp.add_argument("path", type=Path, help="the trace to import, or a run folder (every trace in it)")
    imp.add_argument("--from", dest="fmt", metavar="FORMAT", help=FORMAT_HELP)
    imp.add_argument("--map", type=Path, help=MAP_HELP)
    imp.add_argument(
        "-o", "--output", type=Path, required=True, help="canonical JSONL file to write (- for standard output)"
    )
    imp.add_argument("--jobs", type=int, help="worker processes for a folder (default: CPUs, at most 4)")
    add_json_arg(imp, "what was imported")
    imp.set_defaults(func=_import)

    stats = trace_sub.add_parser(
        "stats",
        help="analyze a trace: recovery chains, thrash, oscillation, deadlocks, deaths, MTTR, context profile",
        description="Analyze a canonical or importable trace and list every bad line as file:line: reason.",
    )
    stats.add_argument("file", type=Path, help="a trace in any supported format, or a run folder")
    stats.add_argument("--json", action="store_true", help="print the analysis as JSON")
    stats.add_argument("--from", dest="fmt", metavar="FORMAT", help=FORMAT_HELP)
    stats.add_argument("--deadlock-window", type=int, help="ticks without progress that make a deadlock")
    stats.add_argument("--thrash-min", type=int, help="failures of one action that make thrashing")
    stats.add_argument("--max-line-mb", type=float, help="lines longer than this are reported and skipped")
    stats.add_argument("--map", type=Path, help=MAP_HELP)
    stats.add_argument(
        "--warmup", type=int, help="ticks before the context growth is fitted (default: context_window + 1, else 5)"
    )
    stats.set_defaults(func=_stats)

    export = trace_sub.add_parser(
        "export",
        help="write a trace in another format (OpenTelemetry GenAI spans as OTLP JSON)",
        description="Write a dirty trace (canonical, or any format the importers read) as OpenTelemetry spans with "
        "the GenAI semantic conventions, OTLP JSON encoding, for tools that read OTLP (Phoenix, Langfuse, Jaeger).",
    )
    export.add_argument("file", type=Path)
    export.add_argument("--to", dest="to", required=True, choices=["otlp-json"], help="the format to write")
    export.add_argument("--from", dest="fmt", metavar="FORMAT", help=FORMAT_HELP)
    export.add_argument("-o", "--output", type=Path, required=True, help="file to write (- for standard output)")
    export.add_argument("--service", default="phasef", help="service.name of the exported spans")
    export.set_defaults(func=_export)

    view = trace_sub.add_parser("view", help="browse a trace in the terminal", description="Browse a trace.")
    view.add_argument("file", type=Path, help="a trace in any supported format, or a run folder")
    view.add_argument("--follow", action="store_true", help="keep following the file as it grows")
    view.add_argument("--from", dest="fmt", metavar="FORMAT", help=FORMAT_HELP)
    view.set_defaults(func=_view)


def _unknown_format(command: str, fmt: str | None) -> int | None:
    if fmt is None:
        return None  # (the importers' modules are ~0.1 s of imports: not on the viewer's way to its first screen)
    from pipeline.traces.importers import EXPLICIT_FORMATS, FORMATS

    known = FORMATS + EXPLICIT_FORMATS
    if fmt is None or fmt in known:
        return None
    print(f"phasef trace {command}: unknown format {fmt!r}; expected one of {', '.join(known)}", file=sys.stderr)
    return 2


def _cannot_read(command: str, path: Path, exc: BaseException) -> int:
    from pipeline.fsio import FileTooLarge, NotARegularFile

    if isinstance(exc, NotARegularFile | FileTooLarge):
        print(f"phasef trace {command}: {exc}", file=sys.stderr)  # the message names the path and what it is
        return 2
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if detail.startswith(f"{path}:"):  # the message names the path (and maybe a line) itself: say it once
        print(f"phasef trace {command}: cannot read {path}{detail[len(str(path)) :]}", file=sys.stderr)
    else:
        print(f"phasef trace {command}: cannot read {path}: {detail}", file=sys.stderr)
    return 2


class _OutputFailed(Exception):
    """Writing the output failed (as opposed to reading the input)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _OutputWrites:
    """The output of a folder import: a failed write is raised as ``_OutputFailed``, so it is not taken for a
    folder that cannot be read."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            raise _OutputFailed(exc) from exc


def _cannot_write(command: str, out: Path, exc: OSError) -> int:
    print(f"phasef trace {command}: cannot write {out}: {exc.strerror or exc}; it was left as it was", file=sys.stderr)
    return 1


def _import(args: argparse.Namespace) -> int:
    import orjson

    from pipeline.traces.importers import UnknownFormat, detect_format, import_trace

    path: Path = args.path
    if (code := _unknown_format("import", args.fmt)) is not None:
        return code
    if args.json and is_stdout(args.output):
        print("phasef trace import: --json and -o - would both write to standard output; choose one", file=sys.stderr)
        return 2
    if path.is_dir():
        return _import_folder(args)
    try:
        fmt = args.fmt or ("jsonl" if args.map is not None else detect_format(path))
        records, bad_lines = import_trace(path, fmt, mapping=args.map)
    except (OSError, UnknownFormat, ValueError) as exc:
        return _cannot_read("import", path, exc)
    out: Path = args.output
    for bad in bad_lines:
        print(bad, file=sys.stderr)
    if not records and bad_lines:
        print(f"{path} ({fmt}): nothing could be imported; {out} left as it was", file=sys.stderr)
        return 1
    try:
        with open_output(out) as fh:
            for record in records:
                fh.write(orjson.dumps(record) + b"\n")
    except OSError as exc:
        return _cannot_write("import", out, exc)
    episodes = len({(r.get("run_id"), r["episode"]) for r in records})
    ticks = sum(1 for r in records if r["kind"] == "tick")
    code = 0 if records or not bad_lines else 1
    if args.json and code == 0:
        summary = {
            "source": str(path),
            "format": fmt,
            "output": output_name(out),
            "records": len(records),
            "episodes": episodes,
            "ticks": ticks,
            "bad_lines": [str(b) for b in bad_lines],
        }
        print(json.dumps(summary))
        return code
    if getattr(args, "quiet", False) and code == 0:
        return code
    print(
        f"{path} ({fmt}): {len(records)} records, {episodes} episodes, {ticks} ticks -> {output_name(out)}"
        + (f"; {len(bad_lines)} bad" if bad_lines else ""),
        file=sys.stderr,
    )
    return code


def _import_folder(args: argparse.Namespace) -> int:
    """``phasef trace import DIR -o OUT``: every trace in the folder into one canonical JSONL."""
    from pipeline.traces.importers.folders import count_units, import_folder, terminal_progress

    folder: Path = args.path
    out: Path = args.output
    progress = terminal_progress(sys.stderr) if sys.stderr.isatty() else None
    total = count_units(folder) if progress is not None else None
    reading = False  # an error while the folder is read is a reading error, unless writing ``out`` raised it
    try:
        with open_output(out) as fh:
            reading = True
            summary = import_folder(
                folder, _OutputWrites(fh), fmt=args.fmt, jobs=args.jobs, progress=progress, total=total
            )
            reading = False
    except _OutputFailed as failed:
        return _cannot_write("import", out, failed.error)
    except OSError as exc:
        if not reading:  # making the output, or renaming it into place
            return _cannot_write("import", out, exc)
        return _cannot_read("import", folder, exc)
    sys.stderr.write(render_folder_summary(summary, output_name(out)))
    return 0 if summary.records or not (summary.skipped_count or summary.bad_line_count) else 1


def _export(args: argparse.Namespace) -> int:
    from collections.abc import Iterator

    from pipeline.traces.export_otlp import write_otlp_json
    from pipeline.traces.importers import UnknownFormat, detect_format, import_trace
    from pipeline.traces.reader import BadLine, iter_records

    path: Path = args.file
    if (code := _unknown_format("export", args.fmt)) is not None:
        return code
    bad_lines: list[BadLine] = []
    try:
        fmt = args.fmt or detect_format(path)
        if fmt == "phasef":

            def canonical() -> Iterator[dict[str, Any]]:
                for item in iter_records(path):
                    if isinstance(item, BadLine):
                        bad_lines.append(item)
                    else:
                        yield item[1]

            records: Any = canonical()
        else:
            records, bad_lines = import_trace(path, fmt)
        with open_output(args.output) as fh:
            spans = write_otlp_json(records, fh, service=args.service)
    except (OSError, UnknownFormat) as exc:
        return _cannot_read("export", path, exc)
    for bad in bad_lines:
        print(bad, file=sys.stderr)
    bad_note = f"; {len(bad_lines)} bad" if bad_lines else ""
    print(f"{path} ({fmt}): {spans} spans -> {output_name(args.output)}{bad_note}", file=sys.stderr)
    return 0


def _analyze_any(path: Path, fmt: str | None, options: dict[str, Any]) -> tuple[TraceAnalysis, ChainStore]:
    """Analyze canonical JSONL in place; import anything else (a foreign file, a run folder) through the cache.

    The chains come in a compact ``ChainStore`` beside the analysis (its ``chains`` left empty): a large trace has
    hundreds of thousands of them.
    """
    from pipeline.traces.analysis import analyze_compact
    from pipeline.traces.importers import detect_format
    from pipeline.traces.importers.cache import import_cached
    from pipeline.traces.reader import file_sha256

    if not path.is_dir() and (fmt or detect_format(path)) == "phasef":
        return analyze_compact(path, fmt="phasef", **options)
    imported = import_cached(path, fmt)
    result, chains = analyze_compact(imported.file, fmt="phasef", **options)
    result.file = str(path)
    if not path.is_dir():
        result.sha256 = file_sha256(path)
    result.bad_lines = [*imported.problems, *result.bad_lines]
    return result, chains


def _stats(args: argparse.Namespace) -> int:
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
        if args.warmup is not None:
            options["warmup"] = args.warmup
        if args.map is not None:
            from pipeline.traces.analysis import analyze_records
            from pipeline.traces.importers import import_trace
            from pipeline.traces.reader import file_sha256

            options.pop("max_line_bytes", None)
            records, bad_lines = import_trace(path, "jsonl", mapping=args.map)
            result = analyze_records(records, file=str(path), sha256=file_sha256(path), bad_lines=bad_lines, **options)
            chains: Sequence[ChainSummary] = result.chains
        else:
            result, chains = _analyze_any(path, args.fmt, options)
    except (OSError, UnknownFormat, ValueError) as exc:
        return _cannot_read("stats", path, exc)
    if args.json:
        from pipeline.traces.analysis import ChainStore

        if isinstance(chains, ChainStore):
            write_analysis_json(result, chains, sys.stdout)
        else:
            sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(render_analysis(result, chains))
    return 0


def _view(args: argparse.Namespace) -> int:
    from phasef_tui.trace_view import run_trace_view

    if (code := _unknown_format("view", args.fmt)) is not None:
        return code
    if args.fmt is not None:
        return int(run_trace_view(args.file, args.follow, args.fmt))
    return int(run_trace_view(args.file, args.follow))
