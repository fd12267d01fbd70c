"""A program under a pseudo-terminal, watched from outside: what it draws, when, and what it costs.

The TUI benchmarks run the real viewer in a pty of a fixed size (as an operator's terminal would), read everything
it writes, and time when a marker (a string the screen must show) first appears after an event. CPU and peak
memory come from ``/proc`` while it runs and from ``wait4`` when it exits.
"""

from __future__ import annotations

import fcntl
import os
import re
import resource
import signal
import statistics
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Exit:
    seconds: float
    peak_rss_mb: float
    cpu_s: float


def measure_command(argv: Sequence[str]) -> Exit:
    """Run a plain command to completion (its output read and dropped): wall time, peak RSS, CPU.

    The peak RSS comes from ``/usr/bin/time``: a child forked from this Python process would otherwise report
    this process's memory as its own high-water mark.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "%M %U %S", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    while proc.stdout.read(1 << 16):
        pass
    report = proc.stderr.read().decode().strip().splitlines()[-1].split()
    proc.wait()
    elapsed = time.perf_counter() - started
    return Exit(elapsed, int(report[0]) / 1024, float(report[1]) + float(report[2]))


class Terminal:
    """``argv`` running in a ``cols`` x ``rows`` pty; its output collected with arrival times."""

    def __init__(self, argv: Sequence[str], cols: int = 120, rows: int = 40, env: dict[str, str] | None = None):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        environment = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
        environment.update(env or {})
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            list(argv), stdin=slave, stdout=slave, stderr=slave, env=environment, start_new_session=True
        )
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self.arrivals: list[tuple[float, int]] = []  # (time, length of output after this read)
        self.lock = threading.Lock()
        self.exit: Exit | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            with self.lock:
                self.output += data
                self.arrivals.append((now, len(self.output)))

    @property
    def position(self) -> int:
        with self.lock:
            return len(self.output)

    def send(self, keys: bytes) -> float:
        os.write(self.master, keys)
        return time.monotonic()

    def wait_for(self, marker: bytes | re.Pattern[bytes], start: int = 0, timeout: float = 30.0) -> float | None:
        """When ``marker`` first appeared in the output after byte ``start`` (None on timeout).

        Searches only what arrived since the last look (in place, no copies), so that watching a chatty program
        does not slow down the reader thread (and through a full pty buffer, the program itself).
        """
        deadline = time.monotonic() + timeout
        overlap = 256  # a marker may straddle two reads
        scanned = start
        while True:
            with self.lock:
                size = len(self.output)
                if isinstance(marker, bytes):
                    index = self.output.find(marker, max(start, scanned - overlap))
                    end = index + len(marker) if index >= 0 else -1
                else:
                    found = marker.search(self.output, max(start, scanned - overlap))
                    end = found.end() if found else -1
                if end >= 0:
                    return next(t for t, length in self.arrivals if length >= end)
            scanned = size
            if time.monotonic() > deadline:
                return None
            time.sleep(0.002)

    def cpu_seconds(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / TICKS

    def peak_rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def wait_idle(self, threshold: float = 0.05, window: float = 1.0, timeout: float = 120.0) -> float:
        """Block until the program used less than ``threshold`` of a core for ``window`` seconds (its background
        work is done); returns when that quiet window began."""
        deadline = time.monotonic() + timeout
        last_t, last_cpu = time.monotonic(), self.cpu_seconds()
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now, cpu = time.monotonic(), self.cpu_seconds()
            busy = (cpu - last_cpu) / max(1e-6, now - last_t)
            last_t, last_cpu = now, cpu
            if busy < threshold:
                quiet_since = quiet_since or now
                if now - quiet_since >= window:
                    return quiet_since
            else:
                quiet_since = None
        return time.monotonic()

    def close(self, quit_keys: bytes = b"q", timeout: float = 10.0) -> Exit:
        """Quit (keys, then SIGTERM if needed) and collect wall time, peak RSS and CPU of the whole run."""
        if self.exit is not None:
            return self.exit
        self.send(quit_keys)
        deadline = time.monotonic() + timeout
        usage: resource.struct_rusage | None = None
        while time.monotonic() < deadline:
            pid, _, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
        else:
            os.killpg(self.proc.pid, signal.SIGTERM)
            _, _, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = 0
        os.close(self.master)
        assert usage is not None
        self.exit = Exit(time.monotonic() - self.started, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)
        return self.exit


def summary(values: Sequence[float], unit: str = "ms", scale: float = 1000.0) -> str:
    """median / p95 / max of ``values`` (seconds by default, shown in ms)."""
    if not values:
        return "n/a"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(ordered) * scale:.1f} {unit}, p95 {p95 * scale:.1f} {unit}, "
        f"max {ordered[-1] * scale:.1f} {unit} (n={len(ordered)})"
    )
