"""``phasef handoff verify DIR``: re-hash a training handoff package against its manifest.

Exit status: 0 when every file matches, 1 on any changed, missing, extra or unreadable file, 2 when the manifest
itself is missing or unreadable (or the folder does not exist).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from phasef_tui.commands._common import help_when_bare


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("handoff", help="inspect a training handoff package")
    actions = parser.add_subparsers(dest="handoff_command", metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="re-hash every file of a package against its manifest.json",
        description="Re-hash every file of a handoff package and compare with manifest.json. "
        "Exit 0: all match; 1: a file changed, is missing, is extra or unreadable; 2: no usable manifest.",
    )
    verify.add_argument("dir", type=Path, help="the package folder (holds manifest.json)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(func=handle_verify)
    help_when_bare(parser)


def handle_verify(args: argparse.Namespace) -> int:
    from pipeline.train.manifest import ManifestUnreadable, verify_package

    root: Path = args.dir
    if not root.is_dir():
        print(f"error: {root}: not a folder", file=sys.stderr)
        return 2
    try:
        report = verify_package(root)
    except ManifestUnreadable as exc:
        if args.json:
            print(json.dumps({"root": str(root), "ok": False, "error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            print(line)
        if report.ok:
            print(f"ok: {report.checked} files match {root / 'manifest.json'}")
        else:
            print(f"FAILED: {len(report.lines())} differences from {root / 'manifest.json'}", file=sys.stderr)
    return 0 if report.ok else 1
