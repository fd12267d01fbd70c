"""``phasef report build --trace T [--gate FILE] -o R``: phasef's eval report of a trace, no session.

Every figure, check and the verdict are computed from the trace alone, with the gate given (``--gate``, else the
``params.gate`` of ./config.toml's validation step, else the defaults). A trace in another format is imported first
(``--from``, or ``--map`` for a runner's own JSONL); the canonical trace is written beside the report (not kept for
``-o -``, which writes the report to standard output). Exit 0 when the report was written (whatever its verdict), 2
when the input cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from phasef_tui.commands._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_json_arg,
    help_when_bare,
    is_stdout,
    open_output,
    output_name,
)
from phasef_tui.commands.validate import add_trace_args, resolve_gate_arg


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("report", help="build an eval report from a trace", description=__doc__)
    report_sub = parser.add_subparsers(dest="report_command", metavar="SUBCOMMAND")
    help_when_bare(parser)
    build = report_sub.add_parser(
        "build",
        help="compute the eval report of a trace (phasef.eval_report/1)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    add_trace_args(build)
    build.add_argument(
        "-o", "--output", type=Path, required=True, help="the report file to write (- for standard output)"
    )
    build.add_argument("--run-id", help="the report's runId (default: the trace's run_id, else the file name)")
    add_json_arg(build, "the verdict and where the report went")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    import tempfile

    from pipeline.bench.validate import Validation, import_runner_trace, phasef_report
    from pipeline.report.eval_report import report_json

    resolved = resolve_gate_arg(args)
    if resolved is None:
        return EXIT_USAGE
    gate, gate_source = resolved
    out: Path = args.output
    if args.json and is_stdout(out):
        print("phasef report build: --json and -o - would both write to standard output; choose one", file=sys.stderr)
        return EXIT_USAGE
    trace: Path | None = args.trace
    with tempfile.TemporaryDirectory(prefix="phasef-report-") as scratch:
        if args.fmt not in (None, "phasef") or args.map is not None:
            # the imported trace is kept beside the report, or thrown away with the scratch folder for -o -
            imported = Path(scratch, "trace.jsonl") if is_stdout(out) else out.with_name(out.stem + ".trace.jsonl")
            result = Validation()
            trace = import_runner_trace(args.trace, imported, args.fmt, args.map, result)
            for problem in result.problems:
                print(problem, file=sys.stderr)
        if trace is None or not trace.is_file():
            print(f"error: cannot read {args.trace}", file=sys.stderr)
            return EXIT_USAGE
        claims = {"runId": args.run_id} if args.run_id else None
        report = phasef_report(trace, gate, claims, api_key_env=args.api_key_env)
    try:
        with open_output(out) as fh:
            fh.write((json.dumps(report_json(report), indent=2, ensure_ascii=False) + "\n").encode())
    except OSError as exc:
        print(f"phasef report build: cannot write {out}: {exc.strerror or exc}; it was left as it was", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        doc = {
            "verdict": report.verdict,
            "ticks_observed": report.ticks_observed,
            "reasons": list(report.reasons),
            "gate_source": str(gate_source),
            "gateConfigHash": report.gate_config_hash,
            "report": str(out),
        }
        print(json.dumps(doc))
        return EXIT_OK
    reasons = f": {'; '.join(report.reasons)}" if report.reasons else ""
    print(
        f"{report.verdict} with {report.ticks_observed} ticks (gate from {gate_source}, gateConfigHash "
        f"{report.gate_config_hash[:12]}){reasons} -> {output_name(out)}",
        file=sys.stderr,
    )
    return EXIT_OK
