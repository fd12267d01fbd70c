"""Throughput of trace analysis against the speed of merely reading and JSON-parsing the same file.

Generates a canonical dirty trace of realistic records (~430 bytes each: model ticks with actions, observations,
context sizes, recovery chains, traps; episode start/end records) into /tmp, warms the page cache, then runs in
fresh child processes (so that each peak RSS is its own):

* baseline: ``for line in file: orjson.loads(line)`` — the floor any per-line Python analysis pays;
* analysis: ``pipeline.traces.analysis.analyze(path)`` — chains, thrash, oscillation, deadlocks, deaths, traps,
  MTTR, context profile, sha256 of the file, bad-line checks.

Each phase runs ``--repeat`` times, interleaved, and the best run is reported (the machine is shared, so the
best run is the one least disturbed). Prints MB/s and records/s (wall clock) for both, their CPU seconds (less
sensitive to other load; a second process's CPU included), the ratios, peak RSS (each process's own) and the peak
PSS of a phase's processes together (sampled from outside every 20 ms; pages they share counted once). The peak of
``trace stats`` lasts ~10-30 ms (the hand-over of the second half), which 20 ms samples can miss, so one more run
of it is sampled every 2 ms, for its memory only (the sampler then takes a share of a core: its time is not used);
the target line reports the highest peak of all its runs.

    python benchmarks/bench_trace_analysis.py [--size-mb 1024] [--repeat 3] [--keep] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("list", "read", "search", "check", "answer")  # the reference workload's verbs
ERROR_CLASSES = ("SchemaViolation", "Timeout", "NotFound", "CheckFailed", "Deadlock", "WrongAnswer")
MECHANISMS = ("schema_repair", "reflex", "watchdog", "model")
TRAPS = ("hang", "deadlock", "flaky", "context_bomb")
WORDS = (
    "def handler return value module config retry lock timeout path check result index cache entry token worker "
    "queue buffer offset parse schema record trace episode status field"
).split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _action(rng: random.Random) -> dict[str, Any]:
    """An action shaped like the reference workload's: ``{"act": verb, "arg": text}``."""
    act = rng.choice(TOOLS)
    if act == "read":
        arg = f"src/mod_{rng.randrange(40)}.py"
    elif act == "list":
        arg = f"src/sub_{rng.randrange(8)}"
    elif act == "search":
        arg = rng.choice(WORDS)
    elif act == "check":
        arg = f"checks/check_{rng.randrange(12)}.py"
    else:
        arg = str(rng.randrange(1000))
    return {"act": act, "arg": arg}


def generate(path: Path, size_bytes: int, seed: int) -> tuple[int, int]:
    """Write episodes until the file reaches ``size_bytes``; returns (records, bytes)."""
    rng = random.Random(seed)
    ts = 1_767_225_600.0
    records = 0
    written = 0
    episode_no = 0
    with open(path, "wb", buffering=1 << 20) as fh:
        while written < size_bytes:
            episode = f"ep-{episode_no:06d}"
            episode_no += 1
            lines = [
                {
                    "schema": "phasef.dirty_trace/1",
                    "kind": "episode_start",
                    "run_id": "bench-1",
                    "episode": episode,
                    "task_id": f"task-{episode_no % 97}",
                    "ts": ts,
                    "model": "tiny-qwen3",
                    "seed": episode_no,
                    "task": "find the failing check and fix it",
                    "traps": [rng.choice(TRAPS)],
                }
            ]
            n_ticks = rng.randrange(60, 200)
            chain: str | None = None
            chain_no = 0
            chain_left = 0
            outcome_end = "success"
            for tick in range(n_ticks):
                ts += rng.uniform(0.2, 1.5)
                action = _action(rng)
                role: str | None = None
                error_class: str | None = None
                recovery: str | None = None
                outcome = "ok"
                if chain is not None:
                    chain_left -= 1
                    recovery = rng.choice(MECHANISMS)
                    if chain_left > 0:
                        role, outcome, error_class = "attempt", "error", rng.choice(ERROR_CLASSES)
                    else:
                        role = "recovered"
                elif rng.random() < 0.08:
                    chain_no += 1
                    chain = f"{episode}-c{chain_no}"
                    chain_left = rng.randrange(1, 4)
                    role, outcome, error_class = "failure", "error", rng.choice(ERROR_CLASSES)
                trap = rng.choice(TRAPS) if rng.random() < 0.02 else None
                lines.append(
                    {
                        "kind": "tick",
                        "run_id": "bench-1",
                        "episode": episode,
                        "ts": round(ts, 3),
                        "tick": tick,
                        "actor": "model" if recovery in (None, "model") else "repair",
                        "latency_s": round(rng.uniform(0.1, 1.2), 3),
                        "prompt_tokens": rng.randrange(600, 900),
                        "completion_tokens": rng.randrange(8, 30),
                        "context_chars": 2400 + rng.randrange(0, 900),
                        "raw_output": orjson.dumps(action).decode(),
                        "action": action,
                        "outcome": outcome,
                        "error_class": error_class,
                        "observation": _text(rng, rng.randrange(2, 6)),
                        "trap": trap,
                        "chain_id": chain,
                        "chain_role": role,
                        "recovery": recovery,
                        "progress": outcome == "ok" and rng.random() < 0.7,
                    }
                )
                if role == "recovered":
                    chain = None
                if trap == "hang" and rng.random() < 0.05:
                    outcome_end = "death"
                    break
            lines.append(
                {
                    "schema": "phasef.dirty_trace/1",
                    "kind": "episode_end",
                    "run_id": "bench-1",
                    "episode": episode,
                    "ts": ts,
                    "outcome": outcome_end,
                    "ticks": len(lines) - 1,
                    "solved": outcome_end == "success",
                    "reason": "hang trap killed the action" if outcome_end == "death" else None,
                }
            )
            for line in lines:
                data = orjson.dumps(line) + b"\n"
                fh.write(data)
                written += len(data)
            records += len(lines)
    return records, written


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _children() -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of the processes this one started and waited for (the analysis's second
    process, when it splits the trace): their CPU counts in the ratios, their peak is printed beside ours."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def phase_baseline(path: Path) -> dict[str, Any]:
    loads = orjson.loads
    start, cpu = time.perf_counter(), time.process_time()
    records = 0
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
            records += 1
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "records": records,
        "peak_rss_mb": _peak_rss_mb(),
    }


def phase_analysis(path: Path) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from pipeline.traces.analysis import analyze

    start, cpu, child_cpu = time.perf_counter(), time.process_time(), _children()[0]
    result = analyze(path)
    seconds = time.perf_counter() - start
    children = _children()
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu + children[0] - child_cpu,
        "child_cpu_seconds": children[0] - child_cpu,
        "child_peak_rss_mb": children[1],
        "records": result.records,
        "peak_rss_mb": _peak_rss_mb(),
        "chains": len(result.chains),
        "deaths": len(result.deaths),
        "bad_lines": len(result.bad_lines),
        "context_bounded": result.context.bounded,
        "mttr_ticks": result.mttr_ticks,
    }


def phase_stats(path: Path) -> dict[str, Any]:
    """What ``phasef trace stats FILE`` does: the analysis with chains in the compact store, then the report."""
    sys.path.insert(0, str(REPO))
    from phasef_tui.commands.trace import render_analysis
    from pipeline.traces.analysis import analyze_compact

    start, cpu, child_cpu = time.perf_counter(), time.process_time(), _children()[0]
    result, chains = analyze_compact(path)
    report = render_analysis(result, chains)
    seconds = time.perf_counter() - start
    children = _children()
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu + children[0] - child_cpu,
        "child_cpu_seconds": children[0] - child_cpu,
        "child_peak_rss_mb": children[1],
        "records": result.records,
        "peak_rss_mb": _peak_rss_mb(),
        "chains": len(chains),
        "report_chars": len(report),
    }


PSS_SAMPLE_S = 0.02  # the timed runs: the sampler must not take much CPU from the phase it measures
PSS_FINE_SAMPLE_S = 0.002  # the memory run of trace stats


def _tree(pid: int) -> list[int]:
    """``pid`` and the processes under it (the analysis's second process)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                pending += [int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
            except OSError:
                pass
    return found


def _tree_pss_kb(pid: int) -> int:
    """PSS of ``pid`` and the processes under it, summed (pages they share counted once, split between them)."""
    total = 0
    for member in _tree(pid):
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass  # (it ended between the two reads)
    return total


def _run_child(phase: str, path: Path, sample_s: float = PSS_SAMPLE_S) -> dict[str, Any]:
    """Run a phase in a fresh process; from here, sample the PSS of it and its own processes together every
    ``sample_s`` (from outside, so the measured process does not pay for the sampling)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--phase", phase, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_pss_kb(proc.pid))
        time.sleep(sample_s)
    out, err = proc.communicate()
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, out, err)
    result: dict[str, Any] = json.loads(out)
    result["peak_pss_mb"] = peak / 1024.0
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1024.0, help="size of the generated trace (default 1 GB)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--repeat", type=int, default=3, help="runs per phase, interleaved; the best is reported")
    parser.add_argument("--phase", choices=("baseline", "analysis", "stats"), help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run = {"baseline": phase_baseline, "analysis": phase_analysis, "stats": phase_stats}[args.phase]
        print(json.dumps(run(args.path)))
        return 0

    path = Path(f"/tmp/phasef-bench-trace-{int(args.size_mb)}mb.jsonl")
    start = time.perf_counter()
    records, size = generate(path, int(args.size_mb * 2**20), args.seed)
    print(
        f"generated {path}: {size / 2**20:.1f} MiB, {records:,} records ({size / records:.0f} bytes/record) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    try:
        with open(path, "rb") as fh:  # warm the page cache so both phases read from memory
            while fh.read(1 << 24):
                pass
        runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "analysis": [], "stats": []}
        for _ in range(max(1, args.repeat)):
            for phase in runs:
                runs[phase].append(_run_child(phase, path))
        baseline = min(runs["baseline"], key=lambda r: r["seconds"])
        analysis = min(runs["analysis"], key=lambda r: r["seconds"])
        stats = min(runs["stats"], key=lambda r: r["seconds"])
        memory_run = _run_child("stats", path, PSS_FINE_SAMPLE_S)
        stats_peak_pss = max(r["peak_pss_mb"] for r in [*runs["stats"], memory_run])
    finally:
        if not args.keep:
            os.unlink(path)
    mb = size / 1e6
    for name, r in (("read + orjson per line", baseline), ("analyze()", analysis), ("trace stats", stats)):
        print(
            f"{name:24s} {r['seconds']:8.2f} s  {mb / r['seconds']:8.1f} MB/s  "
            f"{r['records'] / r['seconds']:12,.0f} records/s  (CPU {r['cpu_seconds']:.2f} s)  "
            f"peak RSS {r['peak_rss_mb']:7.1f} MB, peak PSS of its processes together {r['peak_pss_mb']:6.1f} MB"
            + (
                f" (second process: CPU {r['child_cpu_seconds']:.2f} s, peak RSS {r['child_peak_rss_mb']:.1f} MB)"
                if r.get("child_cpu_seconds")
                else ""
            )
        )
    print(
        f"analysis speed / parse-only speed: {baseline['seconds'] / analysis['seconds']:.2f} (wall), "
        f"{baseline['cpu_seconds'] / analysis['cpu_seconds']:.2f} (CPU)"
    )
    print(
        f"trace stats time / parse-only time: {stats['seconds'] / baseline['seconds']:.2f}x (wall), "
        f"{stats['cpu_seconds'] / baseline['cpu_seconds']:.2f}x (CPU, all processes); peak RSS "
        f"{max(stats['peak_rss_mb'], stats.get('child_peak_rss_mb', 0.0)):.0f} MB (largest process), peak PSS "
        f"{stats_peak_pss:.1f} MB (its processes together, the highest of its runs) "
        f"(target <= 2x, < 100 MB); load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        f"trace stats, peak PSS of its processes together: {memory_run['peak_pss_mb']:.1f} MB sampled every "
        f"{PSS_FINE_SAMPLE_S * 1000:g} ms (a run for its memory), "
        f"{', '.join(format(r['peak_pss_mb'], '.1f') for r in runs['stats'])} MB in the timed runs (every "
        f"{PSS_SAMPLE_S * 1000:g} ms)"
    )
    print(
        f"analysis found: {analysis['chains']:,} chains, {analysis['deaths']:,} deaths, "
        f"{analysis['bad_lines']} bad lines, MTTR {analysis['mttr_ticks']} ticks, "
        f"context bounded: {analysis['context_bounded']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
