"""``phasef validate [--report R] --trace T``: judge a benchmark runner's trace (and its report's claims), no session.

phasef computes the eval report from the trace with the gate (``--gate FILE``, else the ``params.gate`` of
./config.toml's validation step, else the defaults), checks every trace record against the schema and structure,
and compares every figure and the verdict of the runner's report (if given) with its own. Every problem is a line
``file:line: field: message``: the first ``--max-shown`` on the terminal, all of them in the file named after them
(``--problems``), all of them with ``--json``. Exit 0 without problems, 2 with problems or unusable input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from phasef_tui.commands._common import EXIT_OK, EXIT_USAGE

FORMAT_HELP = (
    "the trace's format when it is not phasef JSONL: swe-agent, openhands, mini-swe-agent, tau-bench, inspect-ai, "
    "claude-code, codex, aider, voyager, otel-genai, auto (detected; also for a run folder), or jsonl with --map"
)


def add_trace_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", type=Path, required=True, help="the dirty trace the runner wrote")
    p.add_argument("--gate", type=Path, help="TOML/JSON file with the gate (top level, [gate], or a phasef config)")
    p.add_argument("--from", dest="fmt", metavar="FORMAT", help=FORMAT_HELP)
    p.add_argument("--map", type=Path, help="mapping file (TOML) for a runner's own JSONL (implies --from jsonl)")
    p.add_argument("--api-key-env", help="environment variable whose value must not appear in the trace")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "validate",
        help="check a runner's trace and report against phasef's own report of the trace (no session)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("--report", type=Path, help="the runner's eval report, whose every figure is checked")
    add_trace_args(p)
    p.add_argument("--json", action="store_true", help="print every problem and phasef's verdict as JSON")
    p.add_argument("--max-shown", type=int, default=20, help="problems shown on the terminal (default 20)")
    p.add_argument("--problems", type=Path, help="where to write the full list (default: beside the trace)")
    p.add_argument("-o", "--output", type=Path, help="also write phasef's report here")
    p.set_defaults(func=_validate)


def resolve_gate_arg(args: argparse.Namespace) -> tuple[Any, str] | None:
    """The gate to judge by and where it came from; None (after printing why) when the gate file is unusable."""
    from pipeline.bench.params import GateConfig
    from pipeline.bench.validate import GateFileError, load_gate_file, resolve_gate

    source: Path | None = args.gate
    if source is None:
        default = Path(os.environ.get("PHASEF_CONFIG") or "config.toml")
        if default.is_file() and "gate" in default.read_text(encoding="utf-8", errors="replace"):
            source = default
    try:
        config = load_gate_file(source) if source is not None else GateConfig()
    except GateFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return resolve_gate(config), str(source) if source is not None else "defaults"


def _problems_path(args: argparse.Namespace) -> Path:
    if args.problems is not None:
        return Path(args.problems)
    trace = Path(args.trace)
    beside = trace.with_name(trace.name + ".problems.txt")
    if os.access(beside.parent if beside.parent != Path("") else Path("."), os.W_OK):
        return beside
    return Path(tempfile.gettempdir()) / beside.name


def _validate(args: argparse.Namespace) -> int:
    from pipeline.bench.validate import check_run, shown_problems, write_problems
    from pipeline.report.eval_report import write_report

    resolved = resolve_gate_arg(args)
    if resolved is None:
        return EXIT_USAGE
    gate, gate_source = resolved
    workdir = Path(tempfile.mkdtemp(prefix="phasef-validate-")) if (args.fmt or args.map) else None
    result = check_run(
        args.trace,
        gate=gate,
        report=args.report,
        fmt=args.fmt,
        mapping=args.map,
        workdir=workdir,
        api_key_env=args.api_key_env,
    )
    for note in result.notes:
        print(note, file=sys.stderr)
    problems_path = _problems_path(args)
    if result.problems:
        write_problems(result.problems, problems_path)
    mine = result.report
    if mine is not None and args.output is not None:
        write_report(mine, args.output)
    if args.json:
        data = {
            "ok": result.ok,
            "problems": [p.as_dict() for p in result.problems],
            "problemsFile": str(problems_path) if result.problems else None,
            "verdict": mine.verdict if mine else None,
            "reasons": mine.reasons if mine else [],
            "gate": gate.as_dict(),
            "gateSource": gate_source,
            "gateConfigHash": mine.gate_config_hash if mine else None,
            "report": str(args.output) if args.output and mine else None,
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        if result.problems:
            for line in shown_problems(result.problems, max(1, args.max_shown), problems_path):
                print(line)
        if mine is not None:
            reasons = f": {'; '.join(mine.reasons)}" if mine.reasons else ""
            print(
                f"phasef's verdict (gate from {gate_source}, gateConfigHash {mine.gate_config_hash[:12]}): "
                f"{mine.verdict} with {mine.ticks_observed} ticks{reasons}",
                file=sys.stderr,
            )
    return EXIT_USAGE if result.problems else EXIT_OK
