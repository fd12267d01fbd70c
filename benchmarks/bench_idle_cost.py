"""What idle attached TUIs cost a running fine-tune: tokens/s of a real mlx_lm LoRA training alone and with 8
``phasef attach`` TUIs open on a finished session, interleaved.

    python benchmarks/bench_idle_cost.py [--tuis 8] [--repeats 3] [--iters 200]

The training is ``python -m mlx_lm lora`` on the project's tiny Qwen3 model (``pipeline.models.tiny``, as
bench_train_overhead.py runs it); its throughput is the median of the trainer's own tokens/s reports after the first
(which includes graph compilation). The TUIs run in a private tmux server (its own socket, no user configuration),
each ``phasef attach`` on a session whose plan has finished, 120x35; the training starts once every TUI shows its
first frame and has had time to settle. Runs alternate alone / with TUIs (the order flipping each repeat) so that
changes in the machine's load hit both alike. Printed: every run's tokens/s, the medians and their ratio (the cost
is 1 - ratio; the goal is < 3 %), the ratio within each repeat's pair, and the TUIs' own CPU while the training ran
(utime+stime from /proc). On a loaded shared machine the throughput of one run moves by tens of percent from minute to
minute, far more than 3 %; the TUIs' CPU is then the figure that bounds their cost (MLX trains on one core: TUIs
using x % of a core can take at most x % of its time). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_train_overhead import run_bare, write_data  # noqa: E402

from pipeline.models.tiny import init_tiny  # noqa: E402
from pipeline.train.params import TrainRecipe  # noqa: E402
from tests.spine_helpers import has_event, write_plan  # noqa: E402
from tests.tmux_helpers import Tmux  # noqa: E402

FINISHED_PLAN = """
[stages.A]
title = "Work"

[stages.A.steps.make]
kind = "shell"
command = "mkdir -p out && echo evidence > out/evidence.txt"
outputs = ["out/evidence.txt"]
"""
SETTLE_S = 5.0


def finished_session(work: Path) -> Path:
    """A session whose plan ran to the end (the supervisor has exited)."""
    write_plan(work, FINISHED_PLAN)
    run = subprocess.run(
        [sys.executable, "-m", "phasef_tui.cli", "run", "--headless", "--plain", "--session", "done"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    session = work / "sessions" / "done"
    if run.returncode != 0 or not has_event(session, "run_finished"):
        raise SystemExit(f"the plan did not finish (exit {run.returncode}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return session


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def tui_pids(tmux: Tmux, names: list[str]) -> list[int]:
    """The TUIs' processes: each pane's program and its descendants (``env`` execs; ``sh -c`` waits on it)."""
    out = tmux._tmux("list-panes", "-a", "-F", "#{pane_pid}").stdout.split()
    roots = {int(p) for p in out}
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tmux_server_pid(tmux: Tmux) -> int:
    return int(tmux._tmux("display-message", "-p", "#{pid}").stdout.strip())


def open_tuis(session: Path, count: int) -> tuple[Tmux, list[int]]:
    tmux = Tmux()
    names = [f"tui{i}" for i in range(count)]
    for name in names:
        argv = [sys.executable, "-m", "phasef_tui.cli", "attach", str(session), "--as", name]
        tmux.start(name, argv, 120, 35, cwd=session.parent.parent)
    for name in names:
        tmux.wait_for(name, "done", timeout=120)  # the session's name in the tab/title line: a first frame
    time.sleep(SETTLE_S)
    return tmux, tui_pids(tmux, names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuis", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--rows", type=int, default=64)
    args = parser.parse_args()
    recipe = TrainRecipe(
        iters=args.iters,
        batch_size=4,
        learning_rate=1e-3,
        steps_per_report=10,
        steps_per_eval=args.iters,
        save_every=args.iters,
        val_batches=2,
        test_batches=0,
        max_seq_length=256,
    )
    load_start = os.getloadavg()
    print(
        f"idle cost: mlx_lm lora on the tiny qwen3, {args.iters} steps x batch 4, alone vs with {args.tuis} idle "
        f"phasef attach TUIs (finished session, 120x35, private tmux); {os.cpu_count()} cores, load average "
        f"{load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} at start",
        flush=True,
    )
    alone: list[float] = []
    loaded: list[float] = []
    tui_cpu: list[float] = []
    tmux_cpu: list[float] = []
    with tempfile.TemporaryDirectory(prefix="phasef-bench-idle-") as d:
        work = Path(d)
        session = finished_session(work / "project")
        model = work / "tiny-qwen3"
        init_tiny(model, seed=0)
        data = work / "data"
        write_data(data, args.rows)
        n = 0
        for repeat in range(args.repeats):
            for with_tuis in (False, True) if repeat % 2 == 0 else (True, False):
                n += 1
                if not with_tuis:
                    rate, wall = run_bare(work, model, data, recipe, n)
                    alone.append(rate)
                    print(f"run {n}: alone          {rate:8.0f} tokens/s  ({wall:.1f} s)", flush=True)
                    continue
                tmux, pids = open_tuis(session, args.tuis)
                try:
                    server = [tmux_server_pid(tmux)]
                    before, t = cpu_ticks(pids), time.perf_counter()
                    server_before = cpu_ticks(server)
                    rate, wall = run_bare(work, model, data, recipe, n)
                    spent = (cpu_ticks(pids) - before) / os.sysconf("SC_CLK_TCK")
                    share = spent / (time.perf_counter() - t)
                    server_share = (cpu_ticks(server) - server_before) / os.sysconf("SC_CLK_TCK")
                    server_share /= time.perf_counter() - t
                    for i in range(args.tuis):  # still on screen and alive after the run
                        tmux.wait_for(f"tui{i}", "done", timeout=10)
                finally:
                    tmux.close()
                loaded.append(rate)
                tui_cpu.append(share)
                tmux_cpu.append(server_share)
                print(
                    f"run {n}: with {args.tuis} TUIs   {rate:8.0f} tokens/s  ({wall:.1f} s); the TUIs used "
                    f"{100 * share:.2f} % of a core together ({len(pids)} processes), the tmux server "
                    f"{100 * server_share:.2f} %",
                    flush=True,
                )
    load_end = os.getloadavg()
    a, b = statistics.median(alone), statistics.median(loaded)
    print()
    every = {name: ", ".join(f"{v:.0f}" for v in values) for name, values in (("alone", alone), ("tuis", loaded))}
    print(f"tokens/s alone, median of {len(alone)}:        {a:8.0f}   (all: {every['alone']})")
    print(f"tokens/s with {args.tuis} TUIs, median of {len(loaded)}:  {b:8.0f}   (all: {every['tuis']})")
    print(f"ratio with/alone: {b / a:.3f}  -> cost {100 * (1 - b / a):.1f} % of the fine-tune's tokens/s (goal < 3 %)")
    pairs = [w / x for w, x in zip(loaded, alone, strict=True)]  # each repeat's two runs, minutes apart
    print(f"ratio of each repeat's pair: {', '.join(f'{r:.3f}' for r in pairs)}; median {statistics.median(pairs):.3f}")
    print(
        f"the {args.tuis} idle TUIs' own CPU during the training: median {100 * statistics.median(tui_cpu):.2f} % of "
        f"one core together ({100 * statistics.median(tui_cpu) / args.tuis:.3f} % each); the tmux server showing "
        f"them: median {100 * statistics.median(tmux_cpu):.2f} %"
    )
    print(f"load average at the end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    print(
        json.dumps(
            {
                "tuis": args.tuis,
                "tokens_per_s_alone": round(a, 1),
                "tokens_per_s_with_tuis": round(b, 1),
                "ratio": round(b / a, 4),
                "paired_ratio_median": round(statistics.median(pairs), 4),
                "tui_cpu_pct_of_core": round(100 * statistics.median(tui_cpu), 3),
                "tmux_cpu_pct_of_core": round(100 * statistics.median(tmux_cpu), 3),
                "load_start": round(load_start[0], 2),
                "load_end": round(load_end[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
