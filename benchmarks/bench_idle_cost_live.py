"""What attached TUIs cost the fine-tune they watch: one real ``mlx_train`` step run by the supervisor, with 8
``phasef attach`` TUIs on that live session, their processes stopped and continued in turns.

    python benchmarks/bench_idle_cost_live.py [--tuis 8] [--iters 2400] [--window 16] [--settle 3]

``bench_idle_cost.py`` compares separate trainings, alone and beside TUIs on a finished session; on this kind of
machine one training's tokens/s moves by tens of percent from run to run, so that comparison cannot resolve the 3 %
goal, and a finished session's TUIs draw nothing. Here the TUIs watch the session that trains: each of the trainer's
reports (every 10 steps, ~1 s) is a journal event that every TUI reads and draws (the step's progress, its loss curve).
One training runs throughout; the TUIs are on (running) and off (``SIGSTOP``, the whole process tree) in windows of
``--window`` seconds, in the order off on on off off on ... (so a drift in the machine's speed hits both alike). The
first ``--settle`` seconds of each window are left out (a TUI continued catches up on the events it missed).
Before phasef's own terminal driver (``phasef_tui/driver.py``), each continue started another pair of Textual's
terminal threads in every TUI: the TUIs' CPU, and their cost, grew window by window (figures before it are in
docs/performance.md). Each
trainer report whose interval lies in a window's measured part counts for it (tokens/s weighted by its interval).

Printed: each window's tokens/s, the ratio of each on window to the mean of the off windows next to it, their median
(the cost is 1 - ratio; the goal is < 3 %), the medians of all on and all off windows, and the TUIs' own CPU in the
on windows (utime+stime from /proc, % of one core for all of them together). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_idle_cost import cpu_ticks, tui_pids  # noqa: E402
from bench_train_overhead import write_data  # noqa: E402

from pipeline.models.tiny import init_tiny  # noqa: E402
from tests.spine_helpers import write_plan  # noqa: E402
from tests.tmux_helpers import Tmux  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
ORDER = (False, True, True, False)
"""Off, on, on, off, repeated."""


def plan(model: Path, data: Path, iters: int) -> str:
    params = (
        f'model = "{model}", data = "{data}", iters = {iters}, batch_size = 4, learning_rate = 1e-3, '
        f"steps_per_report = 10, steps_per_eval = {iters}, save_every = {iters}, val_batches = 2, test_batches = 0, "
        "max_seq_length = 256"
    )
    return f'[stages.D]\ntitle = "Fine-tune"\n[stages.D.steps.train]\nkind = "mlx_train"\nparams = {{ {params} }}\n'


def train_reports(journal: Path) -> list[tuple[float, float]]:
    """(time, tokens/s) of each trainer report in the journal, in order (time: the event's, seconds since the
    epoch)."""
    found = []
    if not journal.exists():
        return found
    for line in journal.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # (a line being written)
        payload = event.get("payload") or {}
        if event.get("type") == "step_progress" and payload.get("event") == "train" and payload.get("tokens_per_s"):
            ts = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()
            found.append((ts, float(payload["tokens_per_s"])))
    return found


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def window_rate(reports: list[tuple[float, float]], start: float, end: float) -> float | None:
    """Tokens/s over the reports whose interval (from the report before) lies in ``[start, end]``."""
    total = weight = 0.0
    for (before, _), (at, rate) in itertools.pairwise(reports):
        if start <= before and at <= end:
            total += rate * (at - before)
            weight += at - before
    return total / weight if weight else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuis", type=int, default=8)
    parser.add_argument("--iters", type=int, default=2400, help="training steps (~8 a second here)")
    parser.add_argument("--window", type=float, default=16.0)
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args()
    load_start = os.getloadavg()
    print(
        f"live idle cost: one mlx_train step ({args.iters} steps, tiny qwen3, batch 4) run by the supervisor; "
        f"{args.tuis} phasef attach TUIs on that session (120x35, private tmux) stopped and continued in windows of "
        f"{args.window:.0f} s ({args.settle:.0f} s left out after each switch); {os.cpu_count()} cores, load "
        f"average {load_start[0]:.2f} at start",
        flush=True,
    )
    windows: list[tuple[bool, float, float]] = []
    on_cpu: list[float] = []
    with tempfile.TemporaryDirectory(prefix="phasef-bench-live-") as d:
        work = Path(d)
        project = work / "project"
        init_tiny(work / "tiny-qwen3", seed=0)
        write_data(work / "data", 64)
        write_plan(project, plan(work / "tiny-qwen3", work / "data", args.iters))
        session = project / "sessions" / "live"
        journal = session / "journal.jsonl"
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "phasef_tui.cli", "run", "--headless", "--plain", "--session", "live"],
            cwd=project,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tmux = Tmux()
        try:
            deadline = time.monotonic() + 300
            while len(train_reports(journal)) < 2:  # the trainer runs, its graph compiled
                if supervisor.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the training did not start")
                time.sleep(0.2)
            names = [f"tui{i}" for i in range(args.tuis)]
            for name in names:
                argv = [sys.executable, "-m", "phasef_tui.cli", "attach", str(session), "--as", name]
                tmux.start(name, argv, 120, 35, cwd=project)
            for name in names:
                tmux.wait_for(name, "live", timeout=120)  # the session's name on screen: a first frame
            pids = tui_pids(tmux, names)
            n = 0
            while supervisor.poll() is None:
                on = ORDER[n % len(ORDER)]
                signal_all(pids, signal.SIGCONT if on else signal.SIGSTOP)
                start = time.time()
                time.sleep(args.settle)
                before = cpu_ticks(pids)
                measured = time.time()
                while time.time() - start < args.window and supervisor.poll() is None:
                    time.sleep(0.1)
                end = time.time()
                if supervisor.poll() is None:  # (a window the training outlived: complete)
                    windows.append((on, measured, end))
                    if on:
                        on_cpu.append((cpu_ticks(pids) - before) / TICKS / (end - measured))
                n += 1
            signal_all(pids, signal.SIGCONT)
            for name in names:  # alive and drawing after the run
                tmux.wait_for(name, "live", timeout=30)
        finally:
            signal_all(tui_pids(tmux, [f"tui{i}" for i in range(args.tuis)]), signal.SIGCONT)
            tmux.close()
            if supervisor.poll() is None:
                supervisor.terminate()
                supervisor.wait(timeout=30)
        reports = train_reports(journal)
    rates = [(on, window_rate(reports, start, end)) for on, start, end in windows]
    rows = [(on, rate) for on, rate in rates if rate is not None]
    for i, (on, rate) in enumerate(rows):
        print(f"window {i + 1:2d}: TUIs {'on ' if on else 'off'}  {rate:8.0f} tokens/s", flush=True)
    ratios = []
    for i, (on, rate) in enumerate(rows):
        if on:
            near = [r for o, r in rows[max(0, i - 2) : i + 3] if not o]
            if near:
                ratios.append(rate / statistics.mean(near))
    on_rates = [r for o, r in rows if o]
    off_rates = [r for o, r in rows if not o]
    if not ratios or not off_rates:
        raise SystemExit("too few windows: raise --iters or lower --window")
    load_end = os.getloadavg()
    median_ratio = statistics.median(ratios)
    tui_cpu = 100 * statistics.median(on_cpu) if on_cpu else float("nan")
    print()
    print(f"tokens/s with the TUIs off, median of {len(off_rates)} windows: {statistics.median(off_rates):8.0f}")
    print(f"tokens/s with the TUIs on,  median of {len(on_rates)} windows: {statistics.median(on_rates):8.0f}")
    print(f"each on window against the off windows next to it: {', '.join(f'{r:.3f}' for r in ratios)}")
    cost = 100 * (1 - median_ratio)
    print(f"median ratio {median_ratio:.3f} -> cost {cost:.1f} % of the fine-tune's tokens/s (goal < 3 %)")
    print(
        f"the {args.tuis} TUIs' own CPU in the on windows: median {tui_cpu:.2f} % of one core together "
        f"({tui_cpu / args.tuis:.3f} % each)"
    )
    print(f"load average at the end: {load_end[0]:.2f}")
    print(
        json.dumps(
            {
                "tuis": args.tuis,
                "windows_on": len(on_rates),
                "windows_off": len(off_rates),
                "tokens_per_s_off": round(statistics.median(off_rates), 1),
                "tokens_per_s_on": round(statistics.median(on_rates), 1),
                "ratio_median": round(median_ratio, 4),
                "ratios": [round(r, 4) for r in ratios],
                "tui_cpu_pct_of_core": round(tui_cpu, 3),
                "load_start": round(load_start[0], 2),
                "load_end": round(load_end[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
