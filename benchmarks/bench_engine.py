"""Journal append throughput and the engine's overhead per step, each next to a baseline from the same run.

    python benchmarks/bench_engine.py [--events 2000] [--steps 200]

Journal: events/s with an fsync per event, and with one fsync per batch of 100, against bare ``os.write`` +
``os.fsync`` of the same bytes (what the disk allows). Engine: a plan of N no-op shell steps in one pool slot; the
overhead per step is the run's wall time minus the steps' own time, where a step's own time is measured by
spawning the same wrapped command N times directly in this process (the cost any supervisor must pay).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

from pipeline.config import parse_config
from pipeline.engine import Engine
from pipeline.jobs.local import WRAPPER
from pipeline.journal import Journal


def bench_journal(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        payload = {"stage": "A", "tick": 1, "loss": 0.5, "note": "x" * 100}
        j = Journal(Path(d) / "s1")
        t = time.perf_counter()
        for _ in range(n):
            j.append("step_progress", stage="A", step="s", attempt=1, payload=payload)
        fsync_each = n / (time.perf_counter() - t)
        j.close()
        j = Journal(Path(d) / "s2")
        t = time.perf_counter()
        for i in range(n):
            j.append("step_progress", stage="A", step="s", attempt=1, payload=payload, sync=False)
            if i % 100 == 99:
                j.sync()
        j.sync()
        batched = n / (time.perf_counter() - t)
        j.close()
        line = (Path(d) / "s1" / "journal.jsonl").read_bytes().splitlines(keepends=True)[0]
        fd = os.open(Path(d) / "raw", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        t = time.perf_counter()
        for _ in range(n):
            os.write(fd, line)
            os.fsync(fd)
        raw = n / (time.perf_counter() - t)
        os.close(fd)
    print(f"journal append, fsync per event : {fsync_each:10.0f} events/s")
    print(f"journal append, fsync per 100   : {batched:10.0f} events/s")
    print(f"bare write+fsync (baseline)     : {raw:10.0f} events/s  -> journal/baseline {fsync_each / raw:.2f}")


def bench_engine(n: int) -> None:
    steps = "".join(f'[stages.A.steps.s{i}]\nkind = "shell"\ncommand = "true"\n' for i in range(n))
    cfg = parse_config(f'[pools]\ndefault = 1\n[stages.A]\ntitle = "A"\nsequential = true\n{steps}')
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        for i in range(n):
            status = Path(d) / f"st{i}"
            subprocess.run(["/bin/sh", "-c", WRAPPER, "x", str(status), "/bin/sh", "-c", "true"], check=True)
        baseline = time.perf_counter() - t
        engine = Engine(cfg, session_dir=Path(d) / "sess", project_dir=Path(d))
        t = time.perf_counter()
        result = asyncio.run(engine.run())
        wall = time.perf_counter() - t
        engine.journal.close()
        assert result.exit_code == 0, result
        own = sum(s.duration_s or 0.0 for s in engine.state.steps.values())
    per_step = (wall - baseline) / n * 1000
    print(f"engine: {n} no-op steps in {wall:.2f} s; steps' own time (journal) {own:.2f} s")
    print(f"direct spawn of the same {n} commands (baseline): {baseline:.2f} s ({baseline / n * 1000:.1f} ms each)")
    print(f"engine overhead per step: {per_step:.1f} ms (wall minus baseline) ; wall/baseline {wall / baseline:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    bench_journal(args.events)
    bench_engine(args.steps)


if __name__ == "__main__":
    main()
