"""The trace viewer's first screen, two checkouts side by side: wall and CPU time to the first record on screen.

Each checkout's viewer (``python -m phasef_tui.cli trace view FILE``, which is what ``phasef trace view FILE`` runs, or
with ``--command module`` the viewer's module alone, ``python -m phasef_tui.trace_view FILE``; run with the checkout as
its working directory, so its modules are the ones imported) is started in a 120x40 pty, alternately (A, B, B, A,
...) so that load from elsewhere hits both alike. The time is taken when the first record's text arrives from the
pty; the viewer's CPU time is read from ``/proc`` at that same moment (CPU is steadier than wall time on a loaded
machine). Both checkouts' modules are compiled to bytecode first, as an installed package's are, and each is started
once, uncounted, and left running for 2 s past its first frame: what a start keeps for the next one (the start-up
cache, ``phasef_tui/startup_cache.py``) is then there, as it is for anyone who used the viewer before.

    python benchmarks/bench_first_frame_ab.py /tmp/base . --runs 10 --file /tmp/phasef-compare-1024mb.jsonl
"""

from __future__ import annotations

import argparse
import compileall
import fcntl
import os
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
RECORD = re.compile(rb"ep-\d{4,}")
COLS, ROWS = 120, 40


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


COMMANDS = {"cli": ["-m", "phasef_tui.cli", "trace", "view"], "module": ["-m", "phasef_tui.trace_view"]}


def first_screen(
    checkout: Path, trace: Path, timeout: float = 30.0, end: bytes = b"", command: str = "cli", linger: float = 0.0
) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds) from launch until the first record's text arrives; with ``end`` (the last
    record's text), End is pressed then and the third figure is the time until ``end`` arrives (else NaN)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, *COMMANDS[command], str(trace)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=checkout,
        start_new_session=True,
    )
    os.close(slave)
    output = bytearray()
    wall = cpu = end_s = float("nan")
    sent = 0.0
    mark = 0
    try:
        deadline = started + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:
                break
            if not data:
                break
            output += data
            if wall != wall and RECORD.search(output, max(0, len(output) - len(data) - 64)):
                wall = time.monotonic() - started
                cpu = cpu_seconds(proc.pid)
                if not end:
                    break
                os.write(master, b"\x1b[F")  # End
                sent = time.monotonic()
                mark = len(output)
            elif end and wall == wall and output.find(end, mark) >= 0:
                end_s = time.monotonic() - sent
                break
        stop = time.monotonic() + linger  # (a warm-up start: kept running past its first frame, as a user's is)
        while time.monotonic() < stop:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    os.read(master, 1 << 16)
                except OSError:
                    break
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait()
        os.close(master)
    return wall, cpu, end_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="checkout A (the baseline)")
    parser.add_argument("b", type=Path, help="checkout B")
    parser.add_argument("--file", type=Path, default=Path("/tmp/phasef-compare-1024mb.jsonl"))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--command", choices=COMMANDS, default="cli", help="what is started (default: the CLI's)")
    parser.add_argument("--end", help="press End at the first screen and time until this text (the last record's)")
    args = parser.parse_args()
    checkouts = [args.a.resolve(), args.b.resolve()]
    for checkout in checkouts:
        for package in ("phasef_tui", "widgets", "pipeline"):
            compileall.compile_dir(checkout / package, quiet=1)
    for checkout in checkouts:  # one start each, not counted, that runs on for 2 s: what start-up keeps (the
        first_screen(checkout, args.file, command=args.command, linger=2.0)  # start-up cache) is there, as after use
    results: dict[Path, list[tuple[float, float, float]]] = {c: [] for c in checkouts}
    end = args.end.encode() if args.end else b""
    load_before = os.getloadavg()
    for run in range(args.runs):
        order = checkouts if run % 2 == 0 else checkouts[::-1]
        for checkout in order:
            results[checkout].append(first_screen(checkout, args.file, end=end, command=args.command))
    load_after = os.getloadavg()
    print(f"trace {args.file}, {COLS}x{ROWS}, {args.runs} runs each, interleaved, {' '.join(COMMANDS[args.command])}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    for name, checkout in zip("AB", checkouts, strict=True):
        walls = [w for w, _, _ in results[checkout]]
        cpus = [c for _, c, _ in results[checkout]]
        ends = [e for _, _, e in results[checkout]]
        print(
            f"{name} {checkout}: wall median {statistics.median(walls):.3f} s (min {min(walls):.3f}), "
            f"CPU median {statistics.median(cpus):.3f} s (min {min(cpus):.3f})"
            + (f", End -> last record median {statistics.median(ends):.3f} s (max {max(ends):.3f})" if end else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
