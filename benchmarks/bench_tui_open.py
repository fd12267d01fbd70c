"""Open a big trace in the viewer: time to the first screen, time until the whole file is indexed, peak memory.

Runs ``phasef trace view`` (``python -m phasef_tui.trace_view``) in a 120x40 pty on a generated trace (made in /tmp
when missing) and, in the same run, the baselines: ``tail -n 50`` and ``wc -l`` on the same file (warm page cache),
and the viewer on a 1-line file (the cost of starting Python and Textual at all).

    python benchmarks/bench_tui_open.py --size-mb 1024          # targets: first screen < 1 s, peak RSS < 300 MB
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tui_terminal import Terminal, measure_command
from bench_tui_tracegen import generate

VIEWER = [sys.executable, "-m", "phasef_tui.trace_view"]


def trace_file(size_mb: float) -> Path:
    path = Path(f"/tmp/phasef-bench-{size_mb:g}mb.jsonl")
    if not path.exists() or abs(path.stat().st_size - size_mb * (1 << 20)) > (1 << 20):
        print(f"generating {path} ({size_mb:g} MiB)...", flush=True)
        generate(path, size_mb)
    return path


def first_and_last_episode(path: Path) -> tuple[bytes, bytes]:
    with open(path, "rb") as fh:
        first = orjson.loads(fh.readline())["episode"]
        fh.seek(max(0, path.stat().st_size - 4096))
        last = orjson.loads(fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1])["episode"]
    return first.encode(), last.encode()


def open_static(path: Path, marker: bytes) -> dict[str, float]:
    """The viewer on a finished file: first screen (its first records), then wait for the indexer to finish."""
    term = Terminal([*VIEWER, str(path)])
    shown = term.wait_for(marker, timeout=60)
    idle = term.wait_idle(timeout=300)
    hwm = term.peak_rss_mb()  # VmHWM: this process only (wait4's figure would include the forking parent's)
    exit_ = term.close()
    return {
        "first_screen_s": (shown - term.started) if shown else float("nan"),
        "indexed_s": idle - term.started,
        "peak_rss_mb": hwm,
        "cpu_s": exit_.cpu_s,
    }


def open_following(path: Path, last_marker: bytes) -> float:
    """The viewer with --follow: it shows the end once the scan caught up (End shows the last line)."""
    term = Terminal([*VIEWER, str(path), "--follow"])
    shown = term.wait_for(last_marker, timeout=120)
    term.close()
    return (shown - term.started) if shown else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1024.0)
    parser.add_argument("--runs", type=int, default=3, help="viewer runs (the median is reported)")
    args = parser.parse_args()
    path = trace_file(args.size_mb)
    size = path.stat().st_size
    first, last = first_and_last_episode(path)
    tiny = Path("/tmp/phasef-bench-tiny.jsonl")
    with open(path, "rb") as fh:
        tiny.write_bytes(fh.readline())

    measure_command(["cat", str(path)])  # warm the page cache for everyone
    tail = measure_command(["tail", "-n", "50", str(path)])
    wc = measure_command(["wc", "-l", str(path)])
    startup: list[dict[str, float]] = []
    runs: list[dict[str, float]] = []
    follow: list[float] = []
    for _ in range(args.runs):  # interleaved, so a burst of load elsewhere hits all kinds alike
        startup.append(open_static(tiny, first))
        runs.append(open_static(path, first))
        follow.append(open_following(path, last))

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    first_screen = median([r["first_screen_s"] for r in runs])
    start_only = median([r["first_screen_s"] for r in startup])
    indexed = median([r["indexed_s"] for r in runs])
    rss = max(r["peak_rss_mb"] for r in runs)
    print(f"trace: {path} ({size / 1e9:.2f} GB), terminal 120x40, median of {args.runs} runs")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"baseline tail -n 50:          {tail.seconds * 1000:8.1f} ms   peak RSS {tail.peak_rss_mb:6.1f} MB")
    print(f"baseline wc -l:               {wc.seconds * 1000:8.1f} ms   peak RSS {wc.peak_rss_mb:6.1f} MB")
    print(
        f"viewer on a 1-line file:      {start_only * 1000:8.1f} ms to first screen   peak RSS "
        f"{max(r['peak_rss_mb'] for r in startup):6.1f} MB"
    )
    print(
        f"viewer first screen:          {first_screen * 1000:8.1f} ms   "
        f"({first_screen / tail.seconds:.1f}x tail -n 50, +{(first_screen - start_only) * 1000:.0f} ms over an empty "
        f"start)   target < 1000 ms"
    )
    print(
        f"viewer --follow shows the end: {median(follow) * 1000:7.1f} ms (whole file indexed; "
        f"{median(follow) / wc.seconds:.1f}x wc -l)"
    )
    cpu = median([r["cpu_s"] for r in runs])
    print(f"viewer indexer done (summaries for filters): {indexed:6.2f} s   CPU {cpu:.2f} s")
    print(f"viewer peak RSS:              {rss:8.1f} MB   target < 300 MB")
    ok = first_screen < 1.0 and rss < 300
    print("PASS" if ok else "MISS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
