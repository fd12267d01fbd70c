"""What idle attached TUIs cost by themselves: CPU and wake-ups of ``--tuis`` ``phasef attach`` TUIs left open on a
finished session (or, with ``--waiting``, on a live one whose supervisor waits at a gate: the board's clock ticks each
second, nothing else happens), against a baseline checkout measured in the same run.

    python benchmarks/bench_idle_tuis.py --tuis 8 --window 30 --rounds 2 [--waiting] [--baseline DIR]

Each round opens the TUIs (120x35, in a private tmux server: its own socket, no user configuration), waits for
every first frame and ``--settle`` seconds more, then measures over ``--window`` seconds:

* CPU of the TUIs' process trees (utime + stime from /proc), as % of one core for all of them together;
* wake-ups: voluntary context switches of all their threads (from /proc/<pid>/task/*/status) per second per TUI;
  unlike CPU this hardly depends on the machine's load: it counts how often something in the TUI woke up.

With ``--baseline DIR`` (a checkout of another commit, e.g. ``git worktree add /tmp/base main``) the rounds
alternate between that checkout and this one (its modules first on ``PYTHONPATH``), and the ratios are printed.
bench_idle_cost.py measures the same TUIs against a running fine-tune's tokens/s. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_idle_cost import cpu_ticks, finished_session, tui_pids  # noqa: E402

from tests.spine_helpers import ONE_GATE_PLAN, ONE_GATE_PROMPT, has_event, spawn, wait_for, write_plan  # noqa: E402
from tests.tmux_helpers import Tmux  # noqa: E402


def wakeups(pids: list[int]) -> int:
    """Voluntary context switches of every thread of ``pids`` so far."""
    total = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            try:
                text = status.read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            total += int(text.split("voluntary_ctxt_switches:")[1].split()[0])
    return total


def measure(
    repo: Path, session: Path, tuis: int, settle: float, window: float, shown: str = "done"
) -> tuple[float, float]:
    """(% of one core for all TUIs together, wake-ups per second per TUI) with ``repo``'s modules."""
    names = [f"tui{i}" for i in range(tuis)]
    with Tmux() as tmux:
        for name in names:
            argv = ["env", f"PYTHONPATH={repo}", sys.executable, "-m", "phasef_tui.cli", "attach", str(session)]
            tmux.start(name, [*argv, "--as", name], 120, 35, cwd=session.parent.parent)
        for name in names:
            tmux.wait_for(name, shown, timeout=120)  # the session's name (or the waiting gate) on screen: a first frame
        time.sleep(settle)
        pids = tui_pids(tmux, names)
        cpu, woke, started = cpu_ticks(pids), wakeups(pids), time.monotonic()
        time.sleep(window)
        cpu, woke = cpu_ticks(pids) - cpu, wakeups(pids) - woke
        spent = time.monotonic() - started
        for name in names:  # still alive and on screen
            tmux.wait_for(name, shown, timeout=10)
    return 100 * cpu / os.sysconf("SC_CLK_TCK") / spent, woke / spent / tuis


@contextlib.contextmanager
def waiting_session(work: Path) -> Iterator[Path]:
    """A live session: its supervisor runs the one-gate plan and waits at the gate until the end."""
    write_plan(work, ONE_GATE_PLAN)
    supervisor = spawn("run", "--headless", "--session", "waiting", cwd=work)
    session = work / "sessions" / "waiting"
    try:
        wait_for(lambda: has_event(session, "gate_opened", "B.release"), 60, "the gate to open")
        yield session
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuis", type=int, default=8)
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured per round")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the first frames before measuring")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with, measured in the same run")
    parser.add_argument("--waiting", action="store_true", help="a live session, its supervisor waiting at a gate")
    args = parser.parse_args()
    load = os.getloadavg()
    what = "a live session waiting at a gate" if args.waiting else "a finished session"
    print(
        f"{args.tuis} idle phasef attach TUIs on {what}, {args.window:.0f} s a round; {os.cpu_count()} "
        f"cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start",
        flush=True,
    )
    repos = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in repos}
    with tempfile.TemporaryDirectory(prefix="phasef-bench-idle-tuis-") as d, contextlib.ExitStack() as stack:
        if args.waiting:
            session, shown = stack.enter_context(waiting_session(Path(d) / "project")), ONE_GATE_PROMPT
        else:
            session, shown = finished_session(Path(d) / "project"), "done"
        for round_ in range(args.rounds):
            order = list(repos) if round_ % 2 == 0 else list(reversed(repos))
            for name in order:
                cpu, woke = measure(repos[name], session, args.tuis, args.settle, args.window, shown)
                figures[name].append((cpu, woke))
                print(
                    f"round {round_ + 1} {name:8s}: {cpu:5.2f} % of a core together, {woke:6.1f} wake-ups/s per TUI "
                    f"(load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    result: dict[str, dict[str, float]] = {}
    for name, values in figures.items():
        result[name] = {
            "cpu_pct_of_core": round(statistics.median(v[0] for v in values), 3),
            "wakeups_per_s_per_tui": round(statistics.median(v[1] for v in values), 2),
        }
        print(
            f"{name:8s} median: {result[name]['cpu_pct_of_core']:.2f} % of a core for {args.tuis} TUIs, "
            f"{result[name]['wakeups_per_s_per_tui']:.1f} wake-ups/s per TUI"
        )
    if "baseline" in result:
        for key in ("cpu_pct_of_core", "wakeups_per_s_per_tui"):
            base = result["baseline"][key]
            print(f"ratio this/baseline, {key}: {result['this'][key] / base:.3f}" if base else f"{key}: baseline 0")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(json.dumps({"tuis": args.tuis, "window_s": args.window, "waiting": args.waiting, **result}))


if __name__ == "__main__":
    main()
