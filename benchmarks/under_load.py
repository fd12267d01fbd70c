"""Run a benchmark beside a controlled background load, so that loaded figures can be told apart from quiet ones.

    python benchmarks/under_load.py --cores 1.0 -- python benchmarks/compare_toolong.py --runs 3

``--cores C`` starts ceil(C) processes of plain Python arithmetic at normal priority: each whole core of C is one
process busy all the time, the fraction left is one process busy that share of each ``--period-ms`` (100 ms).
The command runs with this terminal; when it ends the load is stopped and one line says what the load asked for
and what it got (its CPU seconds over the wall time, which is less than asked where the command took the cores),
with the load average before and after. The command's exit status is returned.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time

SPIN = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
duty, period = float(sys.argv[1]), float(sys.argv[2])
clock, x = time.perf_counter, 0
while True:
    start = clock()
    while clock() - start < duty * period:
        for i in range(2000):
            x = (x * 31 + i) & 0xFFFF
    if duty < 1.0:
        time.sleep(max(0.0, period - (clock() - start)))
"""


def duties(cores: float) -> list[float]:
    """The share of a core each load process asks for: 1.0 for each whole core, then the fraction left."""
    if cores < 0 or math.isnan(cores) or math.isinf(cores):
        raise ValueError(f"--cores must be a finite number >= 0, not {cores}")
    whole = int(cores)
    rest = round(cores - whole, 6)
    return [1.0] * whole + ([rest] if rest > 0 else [])


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=float, required=True, help="cores of background CPU demand (e.g. 0.5, 1)")
    parser.add_argument("--period-ms", type=float, default=100.0, help="duty-cycle period of a fractional core")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of load before the command starts")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the benchmark command and its arguments")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    try:
        shares = duties(args.cores)
    except ValueError as exc:
        parser.error(str(exc))
    before = load_average()
    procs = [
        subprocess.Popen([sys.executable, "-c", SPIN, str(share), str(args.period_ms / 1000.0)]) for share in shares
    ]
    started = time.monotonic()
    code = 1
    try:
        time.sleep(args.settle)
        code = subprocess.call(command)
    except KeyboardInterrupt:
        code = 130
    finally:
        wall = time.monotonic() - started
        used = 0.0
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            used += usage.ru_utime + usage.ru_stime
        print(
            f"under_load: {len(procs)} load process(es) asking for {args.cores:g} core(s) got {used:.1f} CPU s in "
            f"{wall:.1f} s = {used / wall if wall else 0.0:.2f} core(s); load average {before} before, "
            f"{load_average()} after",
            flush=True,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
