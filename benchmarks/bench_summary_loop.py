"""The summary's C loop alone, as a worker runs it: the first ``--size-mb`` of a trace read into 4 MiB blocks of
whole lines first (no reading, no pipe, no viewer in the figure), then summarized block by block on a worker's
transient summary (``summary_worker.summarize_delta``), ``--reps`` times in one process; the best CPU time of the
reps is one run's figure. Each run is a fresh process. With ``--baseline DIR`` (a checkout of an earlier commit, its C
module built: ``python setup.py build_ext --inplace`` there) both are run interleaved and the ratio of the medians
printed; the last line is one JSON object.

    python benchmarks/bench_summary_loop.py --size-mb 100 --runs 8 --baseline /tmp/base-checkout

The trace is ``compare_toolong.py``'s (generated once into the temporary folder if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import os, sys, time
from pipeline.traces import summary_worker as sw
path, size, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDONLY)
blocks = [bytes(b) for b in sw.read_range(fd, 0, size, 4 << 20)]
best, first = float("inf"), 0
for _ in range(reps):
    s = sw._restore({"lines": 0, "episodes": [], "chains": [], "chain_episode": b"", "runs": {}})
    c0, first = time.process_time(), 0
    for block in blocks:
        first += sw.summarize_delta(s, first, block).count
    best = min(best, time.process_time() - c0)
print(best, first)
"""


def run_once(tree: Path, path: Path, size: int, reps: int) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(size), str(reps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=str(tree),
    ).stdout.split()
    return float(out[0]), int(out[1])


def instructions_once(tree: Path, path: Path, size: int, reps: int) -> int:
    """The instructions the child runs with ``reps`` passes, counted by valgrind's cachegrind (no cache simulation)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    out = subprocess.run(
        [*cmd, sys.executable, "-c", CHILD, str(path), str(size), str(reps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=str(tree),
    ).stderr
    found = re.search(r"I\s+refs:\s+([\d,]+)", out)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out[-2000:]}")
    return int(found.group(1).replace(",", ""))


def instructions_per_line(trees: dict[str, Path], path: Path, size: int, reps: int) -> dict[str, float]:
    """Instructions per line of the loop in each tree: a run of ``reps`` passes less a run of none (which reads the
    blocks and imports the same), over the lines summarized. Stable to a fraction of a percent where CPU time on a
    shared machine is not."""
    per_line: dict[str, float] = {}
    for name, tree in trees.items():
        lines = instructions_once(tree, path, size, 0)
        with_passes = instructions_once(tree, path, size, reps)
        count = run_once(tree, path, size, 1)[1]
        per_line[name] = (with_passes - lines) / (reps * max(count, 1))
        print(f"{name:8} instructions_per_line {per_line[name]:.0f}  ({count} lines, {reps} passes)")
    return per_line


def line_end_after(path: Path, offset: int) -> int:
    """The offset just past the first newline at or after ``offset`` (the file's size if none)."""
    with path.open("rb") as fh:
        fh.seek(offset)
        while chunk := fh.read(1 << 16):
            at = chunk.find(b"\n")
            if at >= 0:
                return fh.tell() - len(chunk) + at + 1
    return path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=100.0, help="how much of the trace (from its start)")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--reps", type=int, default=5, help="passes per run over the blocks in memory; the best counts")
    parser.add_argument("--trace", type=Path, help="a trace to use instead of compare_toolong.py's")
    parser.add_argument("--baseline", type=Path, help="a checkout of the commit to compare with (its C module built)")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per line under valgrind (cachegrind) instead of timing; use a small --size-mb",
    )
    args = parser.parse_args()
    if args.trace is not None:
        path = args.trace
    else:
        import compare_toolong

        path = compare_toolong.trace_file(1024)
    size = line_end_after(path, int(args.size_mb * (1 << 20)))
    trees = {"branch": REPO, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    if args.instructions:
        if shutil.which("valgrind") is None:
            raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
        per_line = instructions_per_line(trees, path, size, max(args.reps, 1))
        counted: dict[str, object] = {name: {"instructions_per_line": round(v, 1)} for name, v in per_line.items()}
        if "baseline" in per_line:
            ratio = per_line["branch"] / per_line["baseline"]
            print(f"ratio branch/baseline {ratio:.3f}x")
            counted["ratio"] = {"instructions_per_line": round(ratio, 4)}
        print(json.dumps(counted))
        return 0
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    lines = 0
    for run in range(args.runs):
        order = list(trees.items()) if run % 2 == 0 else list(trees.items())[::-1]
        for name, tree in order:
            seconds, lines = run_once(tree, path, size, args.reps)
            cpu[name].append(seconds)
            print(f"run {run + 1} {name:8} cpu_s {seconds:.4f}  us_per_line {1e6 * seconds / max(lines, 1):.3f}")
    result = {name: {"cpu_s": statistics.median(v), "min_cpu_s": min(v), "lines": lines} for name, v in cpu.items()}
    for name, figures in result.items():
        print(f"{name:8} median {figures['cpu_s']:.4f} s  min {figures['min_cpu_s']:.4f} s  ({lines} lines)")
    if "baseline" in result:
        ratio = result["branch"]["cpu_s"] / result["baseline"]["cpu_s"]
        print(f"ratio branch/baseline {ratio:.3f}x")
        result["ratio"] = {"cpu_s": round(ratio, 4)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
