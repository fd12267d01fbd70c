"""The viewer's summary pass alone (no TUI): a trace indexed and summarized by ``TraceIndex.run`` until complete,
in a fresh process per run; wall time, CPU of the process tree (workers included), both per line in microseconds,
CPU of the viewer's process alone,
and RssAnon of the viewer's process once done; the 1-minute load average (``uptime``) when each run started. With
``--baseline DIR`` (a checkout of an earlier commit) both are run interleaved and the ratios printed; the last line is
one JSON object.

    python benchmarks/bench_summary_pass.py --size-mb 1024 --runs 2 --baseline /tmp/base-checkout
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import os, resource, sys, threading, time
from pathlib import Path
from pipeline.traces.index import TraceIndex

def rss_anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0

t0 = time.perf_counter()
index = TraceIndex(Path(sys.argv[1]), include_partial=True)
index.run(threading.Event(), follow=False)
wall = time.perf_counter() - t0
assert index.complete
own = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
print(wall, cpu, rss_anon_mb(), len(index), getattr(getattr(index, "workers", index), "split_lines", 0),
      own.ru_utime + own.ru_stime)
index.close()
"""


def run_once(tree: Path, path: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    load = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], env=env, capture_output=True, text=True, check=True, cwd=str(tree)
    ).stdout.split()
    wall, cpu, rss, lines, split, own = (float(x) for x in out)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "viewer_cpu_s": own,
        "rss_anon_mb": rss,
        "lines": lines,
        "split_lines": split,
        "cpu_us_per_line": cpu / lines * 1e6 if lines else 0.0,
        "wall_us_per_line": wall / lines * 1e6 if lines else 0.0,
        "load": load,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1024.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--baseline", type=Path, help="a checkout of the commit to compare with")
    args = parser.parse_args()
    from compare_toolong import trace_file

    path = trace_file(args.size_mb)
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
    trees = {"branch": REPO, **({"baseline": args.baseline} if args.baseline else {})}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for run in range(args.runs):
        order = list(trees) if run % 2 == 0 else list(reversed(trees))
        for name in order:
            figures = run_once(trees[name], path)
            results[name].append(figures)
            print(f"run {run + 1} {name:8s} " + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
    medians = {
        name: {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}
        for name, runs in results.items()
    }
    if "baseline" in medians:
        for key in ("wall_s", "cpu_s", "cpu_us_per_line", "rss_anon_mb"):
            b, n = medians["baseline"][key], medians["branch"][key]
            print(f"{key:12s} baseline {b:9.3f}  branch {n:9.3f}  ratio {n / b:.2f}x")
    print(json.dumps(medians))
    return 0


if __name__ == "__main__":
    sys.exit(main())
