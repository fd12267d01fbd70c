"""``phasef matrix [REF ...] [--json] [--md FILE]``: the model matrix across sessions (every compared metric for
every evaluated run; runs not judged alike with the first one are shown but marked not comparable)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from phasef_tui.commands._common import EXIT_OK, EXIT_USAGE, add_session_lookup, sessions_root_for


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "matrix",
        help="the model matrix across sessions (default: every evaluation of every session)",
        description="REF: SESSION (all its evaluations), SESSION:STAGE.step, or an eval_report.json path. "
        "The first run is the reference; runs with another task set or gate config are marked not comparable.",
    )
    p.add_argument("refs", nargs="*", metavar="REF")
    p.add_argument("--json", action="store_true", help="print the phasef.model_matrix/1 JSON object")
    p.add_argument("--md", default=None, metavar="FILE", help="also write the matrix as Markdown to FILE")
    add_session_lookup(p)
    p.set_defaults(func=_matrix)


def _matrix(args: argparse.Namespace) -> int:
    from pipeline.fsio import atomic_write_text
    from pipeline.report.cross import RefError, matrix_resolved, resolve_runs
    from pipeline.report.matrix import render_matrix

    root = sessions_root_for(args)
    try:
        runs = resolve_runs(list(args.refs), root)
    except (RefError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not runs:
        print(f"error: no evaluated runs under {root}", file=sys.stderr)
        return EXIT_USAGE
    doc = matrix_resolved(runs)
    markdown = render_matrix(doc)
    if args.md:
        atomic_write_text(Path(args.md), markdown)
    print(json.dumps(doc, indent=2, default=str) if args.json else markdown, end="" if not args.json else "\n")
    for col in doc["columns"]:
        if "error" in col:
            print(f"error: {col['name']}: {col['error']}", file=sys.stderr)
    return EXIT_OK
