"""``phasef compare A B [--json] [--md FILE]``: two evaluated runs of any sessions, paired per episode.

A and B are sessions (``SESSION``), evaluations of a session (``SESSION:STAGE.step``) or eval report paths. Exit 0
when compared, 2 when refused (different task sets or gate configs, a changed trace) or when a reference names no
evaluation; the reasons go to stderr (and into the JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from phasef_tui.commands._common import EXIT_OK, EXIT_USAGE, add_session_lookup, sessions_root_for


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "compare",
        help="compare two evaluated runs of any sessions (paired per episode, noise-aware)",
        description="A and B: SESSION (its last evaluation, or the last one both ran), SESSION:STAGE.step, "
        "or the path of an eval_report.json. Refused (exit 2) unless both used the same task set and gate config.",
    )
    p.add_argument("a", help="the reference run (baseline role)")
    p.add_argument("b", help="the candidate run")
    p.add_argument("--json", action="store_true", help="print the phasef.cross_comparison/1 JSON object")
    p.add_argument("--md", default=None, metavar="FILE", help="also write the comparison as Markdown to FILE")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--min-ticks", type=int, default=100, help="fewer ticks in B is a residual blocker")
    add_session_lookup(p)
    p.set_defaults(func=_compare)


def _table(doc: dict[str, Any]) -> list[str]:
    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = [f"{'metric':<28} {'A':>10} {'B':>10} {'delta':>10}  beyond noise  interval"]
    for m in doc["metrics"]:
        label = f"{m['label']} ({m['unit']})" if m["unit"] in ("s", "ticks", "chars") else m["label"]
        delta = "n/a" if m["delta"] is None else f"{m['delta']:+.4g}"
        ci = f"{m['ci'][0]:+.3g}..{m['ci'][1]:+.3g}" if m["ci"] else "n/a"
        beyond = "YES" if m["beyond_noise"] else "no"
        lines.append(f"{label[:28]:<28} {fmt(m['a']):>10} {fmt(m['b']):>10} {delta:>10}  {beyond:<12}  {ci}")
    return lines


def _compare(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipeline.fsio import atomic_write_text
    from pipeline.report.compare import NoiseParams
    from pipeline.report.cross import RefError, compare_resolved, render_cross_markdown, resolve_pair

    root = sessions_root_for(args)
    try:
        noise = NoiseParams(resamples=args.resamples, seed=args.seed)
        a, b = resolve_pair(args.a, args.b, root)
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"error: --{err['loc'][0]}: {err['msg']}", file=sys.stderr)
        return EXIT_USAGE
    except (RefError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    doc = compare_resolved(a, b, noise, min_ticks=args.min_ticks)
    if args.md:
        atomic_write_text(Path(args.md), render_cross_markdown(doc))
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    if doc["status"] != "compared":
        for reason in doc["refusal"]:
            print(f"refused: {reason}", file=sys.stderr)
        return EXIT_USAGE
    if not args.json:
        print(f"A = {a.label}  ({a.report})")
        print(f"B = {b.label}  ({b.report})")
        print(f"{doc['pairs']} episode pairs; paired bootstrap {noise.resamples} resamples, seed {noise.seed}")
        print()
        print("\n".join(_table(doc)))
        flips = doc["flips"]
        moved = [f"{k}: {len(v)}" for k, v in flips.items() if v]
        print()
        print("flipped episodes: " + (", ".join(moved) if moved else "none"))
        print("residual blockers of B:" + ("" if doc["residual_blockers"] else " none"))
        for blocker in doc["residual_blockers"]:
            print(f"  - {blocker}")
    return EXIT_OK
