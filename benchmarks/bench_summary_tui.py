"""The trace viewer's background summary as the TUI runs it: ``phasef trace view FILE`` in tmux (120x40), launch
until the viewer's process tree used < 5% of a core for a second (``compare_toolong.py``'s test for "summary done"),
``--runs`` times, with the CPU of the viewer (and of its main thread, which draws) and of its workers (sampled
every 50 ms: an exited worker's last sample) until then; with ``--timeline``, the CPU of each process of the tree
(the viewer, its summary workers) every 0.2 s of the first run, which shows which process the pass waits on.

    python benchmarks/bench_summary_tui.py --size-mb 1024 --runs 4 [--timeline]

The last line is one JSON object: ``{"summary_done_s": [...], "median_s": ..., "load": [...], "viewer_cpu_s": [...],
"workers_cpu_s": [...], "ui_thread_cpu_s": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_toolong as ct  # (the same tmux pane, trace and "done" test as the comparison)

TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and every process below it (children of any of its threads)."""
    found: dict[int, float] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = ct.stat_fields(p)
            found[p] = (int(fields[11]) + int(fields[12])) / TICKS
            for tid in os.listdir(f"/proc/{p}/task"):
                todo += [int(k) for k in Path(f"/proc/{p}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return found


def timeline(pane: ct.Pane, seconds: float, step: float = 0.2) -> list[str]:
    """One line per ``step``: time since launch, then ``pid:percent`` of each process of the tree that was busy."""
    lines = []
    last, last_t = tree_cpu(pane.pid), time.monotonic()
    while time.monotonic() - pane.started < seconds:
        time.sleep(step)
        now, t = tree_cpu(pane.pid), time.monotonic()
        busy = {p: (now[p] - last.get(p, 0.0)) / (t - last_t) for p in now}
        lines.append(
            f"{t - pane.started:5.1f} s  "
            + " ".join(f"{p}:{100 * b:3.0f}%" for p, b in sorted(busy.items()) if b > 0.02)
        )
        last, last_t = now, t
    return lines


class CpuByProcess:
    """The CPU seconds of each process of the viewer's tree, sampled every ``step`` in a thread until ``stop``: the
    last sample of a process that has exited (a summary worker) is its total."""

    def __init__(self, pid: int, step: float = 0.05) -> None:
        self.pid = pid
        self.seen: dict[int, float] = {}
        self.ui_thread = 0.0
        """The CPU of the viewer's main thread (Textual's: the frames, the drawing) so far."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(step,), daemon=True)
        self._thread.start()

    def _run(self, step: float) -> None:
        while not self._stop.wait(step):
            for p, cpu in tree_cpu(self.pid).items():
                self.seen[p] = max(self.seen.get(p, 0.0), cpu)
            try:
                fields = Path(f"/proc/{self.pid}/task/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            self.ui_thread = max(self.ui_thread, (int(fields[11]) + int(fields[12])) / TICKS)

    def stop(self) -> tuple[float, float, float]:
        """The viewer's CPU, that of the processes below it (its workers) and that of the viewer's main thread, in
        seconds."""
        self._stop.set()
        self._thread.join()
        viewer = self.seen.get(self.pid, 0.0)
        return viewer, sum(self.seen.values()) - viewer, self.ui_thread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--timeline", action="store_true", help="per-process CPU of the first run, every 0.2 s")
    parser.add_argument("--timeline-s", type=float, default=8.0)
    args = parser.parse_args()
    path = ct.trace_file(args.size_mb)
    done: list[float] = []
    loads: list[float] = []
    cpu: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        socket = Path(tmp) / "tmux"
        for run in range(args.runs):
            loads.append(os.getloadavg()[0])
            pane = ct.Pane(socket, [*ct.phasef_command(False), str(path)], f"summary-{run}")
            try:
                if run == 0 and args.timeline:
                    print("\n".join(timeline(pane, args.timeline_s)))
                    continue
                sampler = CpuByProcess(pane.pid)
                done.append(pane.wait_quiet() - pane.started)
                viewer, workers, ui = sampler.stop()
                cpu.append((round(viewer, 3), round(workers, 3), round(ui, 3)))
                print(
                    f"run {run + 1}: summary done {done[-1]:.2f} s (load {loads[-1]:.2f}); CPU: viewer {viewer:.2f} s"
                    f" (its UI thread {ui:.2f} s), workers {workers:.2f} s, {viewer + workers:.2f} s in all",
                    flush=True,
                )
            finally:
                pane.close()
    median = statistics.median(done) if done else float("nan")
    print(f"summary done, median of {len(done)}: {median:.2f} s")
    summary = {"summary_done_s": [round(d, 3) for d in done], "median_s": round(median, 3), "load": loads}
    cpus = {
        "viewer_cpu_s": [c[0] for c in cpu],
        "workers_cpu_s": [c[1] for c in cpu],
        "ui_thread_cpu_s": [c[2] for c in cpu],
    }
    print(json.dumps({**summary, **cpus}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
