"""Whether the summary pass of a big trace runs in worker processes or in the viewer's own process.

A worker process (``summary_worker``) pays for itself only with a core of its own: its start-up (~0.15 s of CPU),
the pickles and pipes of its answers, and with a second worker the join of its range (``summary_split``) are work
the in-process pass does not do. Where every core is taken (a build or a fine-tune beside the viewer), the kernel
shares the CPU between sessions (``sched_autogroup``), not processes, so the viewer and its workers get one core
between them: the pass then takes about its total CPU, and the less of it the sooner it is done. There the index
summarizes in its own process (``index_workers.SummaryWorkers.local``): ``WORKER_BATCH_BYTES`` of lines at a time,
read with ``pread`` into one buffer (never a mapping: a file cut short under a mapping raises SIGBUS, which would
end the viewer) and summarized straight into the viewer's summary, with no answer to build and take in.

``IdleProbe`` tells whether a core is idle (``/proc/stat``), which ``SummaryWorkers`` asks before it starts
processes. ``PHASEF_SUMMARY_WORKERS`` (``auto``, ``process`` or ``local``) overrides the choice, for comparisons.
"""

from __future__ import annotations

import os
import time

ENV = "PHASEF_SUMMARY_WORKERS"
MODES = ("auto", "process", "local")
IDLE_CORES_MIN = 0.25
"""The idle CPU (in cores) below which the pass runs in the viewer's process. The viewer's own start takes one core,
so a 2-core machine with nothing else to do shows ~1 idle; beside a process busy all the time 0.05-0.12, beside one
busy half the time 0.48-0.63. 1 GB in tmux, 3 runs each of either way: beside the busy one, summary done 2.76-4.67 s
here against 3.06-4.28 s with processes (CPU 2.5-3.9 against 2.8-3.7 s); beside the half-busy one, 4.36-5.05 s here
against 3.37-3.85 s with processes, which then get more than one core between them."""
PROBE_WINDOW_S = 0.12
"""The shortest window over which idle time is judged (``/proc/stat`` counts in ticks of 10 ms per core)."""


def mode() -> str:
    """The choice asked for by ``PHASEF_SUMMARY_WORKERS`` (``auto`` when unset or unknown)."""
    asked = os.environ.get(ENV, "auto").strip().lower()
    return asked if asked in MODES else "auto"


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a container may be given fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times(path: str = "/proc/stat") -> tuple[int, int] | None:
    """(idle ticks, all ticks) summed over the cores since boot; None where there is no ``/proc/stat``."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline().split()
    except OSError:
        return None
    if len(first) < 5 or first[0] != b"cpu":
        return None
    try:
        ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal (guest is in user)
    except ValueError:
        return None
    return ticks[3] + (ticks[4] if len(ticks) > 4 else 0), sum(ticks)


class IdleProbe:
    """The machine's idle CPU since the probe was made, in cores (``idle_cores``)."""

    def __init__(self, path: str = "/proc/stat") -> None:
        self.path = path
        self.started = time.monotonic()
        self.start = _cpu_times(path)
        self.cores = os.cpu_count() or 1

    def ready(self) -> bool:
        """Whether the window is long enough to judge (or there is nothing to judge by, or the choice is made by
        ``PHASEF_SUMMARY_WORKERS``)."""
        return self.start is None or mode() != "auto" or time.monotonic() - self.started >= PROBE_WINDOW_S

    def idle_cores(self) -> float | None:
        """Idle CPU over the window in cores (0 .. the machine's cores); None when it cannot be told."""
        now = _cpu_times(self.path)
        if self.start is None or now is None:
            return None
        idle, total = now[0] - self.start[0], now[1] - self.start[1]
        if total <= 0:
            return None
        return self.cores * idle / total

    def spare_core(self) -> bool:
        """Whether worker processes would get a core of their own: asked by ``PHASEF_SUMMARY_WORKERS``, else a
        core's worth idle (unknown: yes, as before there was a probe)."""
        asked = mode()
        if asked != "auto":
            return asked == "process"
        if usable_cores() < 2:
            return False  # (a process held to one core, as in a container given one CPU: workers only share it)
        idle = self.idle_cores()
        return idle is None or idle >= IDLE_CORES_MIN


_OPENED = IdleProbe()
"""The probe made when this module was imported (the viewer's start, for a trace opened on the command line)."""
PROBE_FRESH_S = 5.0


def probe_for_open() -> IdleProbe:
    """A probe for a trace opened now: the one made at import when that was recent, so its window has run while the
    viewer started; else a new one."""
    if time.monotonic() - _OPENED.started < PROBE_FRESH_S:
        return _OPENED
    return IdleProbe()
