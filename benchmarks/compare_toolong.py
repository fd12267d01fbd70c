"""phasef's trace viewer side by side with toolong (``tl``), measured as a new user would see them, in one run.

toolong is installed from PyPI into a throwaway venv (``--toolong-venv``, made when missing; ``--tl`` names an
existing ``tl`` instead). Both viewers run in tmux at 120x40 on a private server (``tmux -S <socket> -f /dev/null``,
never the user's). Runs are interleaved (phasef, toolong, toolong, phasef, ...) so a burst of load elsewhere hits
both alike; medians are reported.

How the screen is watched: for the first screen (``--screen-probe stream``, the default) the pane's output is
streamed to this process as tmux reads it (``pipe-pane`` into a FIFO, waited on with ``select``): the viewer is
started from a pane held at a ``tmux wait-for`` channel, the stream is opened, and the clock starts when the channel
is signalled; the first screen is up when a record's text has passed through tmux. The other figures read the screen
with ``capture-pane`` every few milliseconds (so did the first screen before, ``--screen-probe poll``): each read is a
new tmux client and a render of the pane by the server, ~200 a second, which on 2 cores takes CPU from the viewer
being timed (``--probe-cost`` measures it).

Per viewer and run, on a generated trace of ``--size-mb`` whose last record is a death tick with a unique episode:

* ``first_screen_s``: launch until a record is on screen;
* ``end_last_record_s``: End pressed (as soon as the first screen is up) until the last record is on screen; for
  phasef only once its badge (``D``, a death) is drawn on that row — toolong has no badges;
* ``summary_done_s``: launch until the viewer's background work is done (the process used < 5% of a core for a
  second): phasef's summary (badges on every row, filters complete), toolong's line index;
* ``rss_anon_mb``: private memory (RssAnon) once done; ``idle_cpu_pct``: CPU over ``--idle-s`` seconds after that
  (CPU and memory of the viewer's whole process tree: phasef summarizes big files in a worker process);
* ``flood_delay_p50_s``: a second file followed while another process appends ``--rate`` records/s (phasef with
  ``--follow``; toolong tails by default): for each new newest record seen on screen, how long ago it was written.

phasef's modules are compiled to bytecode before the runs (``--source-only`` not to), as they are in an installed
package and as toolong's are in its venv: under ``PYTHONDONTWRITEBYTECODE`` an editable checkout is compiled again at
every launch, which is no cost a user of an installed phasef pays. Each viewer is then started once, unmeasured, and
left running for 2 s past its first screen, so that what a start keeps for the next (phasef's start-up cache) is
there, as it is for anyone who opened a trace before.

In each run the smallest Textual app that shows the file's first lines (``textual_floor_app.py``) is started too
(``--no-floor`` not to): its first screen is the floor of any Textual viewer's on this machine in those minutes (the
machine's speed here moves by 2-3x within a quarter of an hour), printed with phasef's ratio to it.

Prints a table (with the load average), the floor, and, as its last line, one JSON object
``{"phasef": {...}, "toolong": {...}}``.

    python benchmarks/compare_toolong.py --size-mb 1024 --runs 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tui_follow import append
from bench_tui_tracegen import generate

REPO = Path(__file__).resolve().parents[1]
COLS, ROWS = 120, 40
TICKS = os.sysconf("SC_CLK_TCK")
LAST_EPISODE = "ZZLAST0001"
RECORD = re.compile(r"ep-\d{4,}|L\d{8}")
RECORD_BYTES = re.compile(RECORD.pattern.encode())
PHASEF_LAST = re.compile(r"D[·A-Z]{5}\s+" + LAST_EPISODE)
"""The last record's row in phasef's stream with its death badge in the badge column."""
SEQ = re.compile(r"L(\d{8})")
FIGURES = ("first_screen_s", "end_last_record_s", "summary_done_s", "rss_anon_mb", "idle_cpu_pct", "flood_delay_p50_s")


# -- the two viewers -------------------------------------------------------------------------------------------------
def toolong_command(venv: Path, tl: str | None) -> list[str]:
    """``tl`` from ``--tl``, or from the throwaway venv (created and filled from PyPI when missing)."""
    if tl:
        return [tl]
    exe = venv / "bin" / "tl"
    if not exe.exists():
        print(f"installing toolong into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "toolong"], check=True)
    return [str(exe)]


def phasef_command(follow: bool) -> list[str]:
    """What ``phasef trace view [--follow]`` runs (the console script calls ``phasef_tui.cli.main``), so the CLI's
    own start-up is measured too, as a user pays it."""
    return [sys.executable, "-m", "phasef_tui.cli", "trace", "view", *(["--follow"] if follow else [])]


def stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (``[1]`` the parent, ``[11]``/``[12]`` user and system
    ticks, ``[13]``/``[14]`` those of children waited for); OSError when the process is gone."""
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


# -- a private tmux server ---------------------------------------------------------------------------------------------
class Pane:
    """One program in a pane of a private tmux server; the screen read with ``capture-pane``."""

    def __init__(self, socket: Path, argv: list[str], name: str, gated: bool = False) -> None:
        """``gated``: the pane waits at the ``tmux wait-for`` channel named ``name`` before it runs ``argv``
        (``start``)."""
        self.tmux = ["tmux", "-S", str(socket), "-f", "/dev/null"]
        self.name = name
        command = "exec " + " ".join(_quote(a) for a in argv)
        if gated:
            command = " ".join(_quote(a) for a in [*self.tmux, "wait-for", name]) + "; " + command
        self.started = time.monotonic()
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-x", str(COLS), "-y", str(ROWS), "-s", name, command], check=True
        )
        out = subprocess.run(
            [*self.tmux, "display-message", "-p", "-t", name, "#{pane_pid}"], capture_output=True, text=True
        )
        self.pid = int(out.stdout.strip())  # (the shell that waits, then runs the viewer in its place: ``exec``)

    def start_streamed(self, fifo: Path, pattern: re.Pattern[bytes], timeout: float) -> float | None:
        """A gated pane: stream its output into ``fifo``, let it run its viewer, and return when ``pattern`` had
        passed through tmux (None: not within ``timeout``). The clock (``started``) starts at the signal; the
        stream is closed again before returning."""
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # (no writer yet: select waits for the first one's data)
        try:
            subprocess.run([*self.tmux, "pipe-pane", "-t", self.name, "exec cat > " + _quote(str(fifo))], check=True)
            self.started = time.monotonic()
            subprocess.run([*self.tmux, "wait-for", "-S", self.name], check=True)
            deadline = self.started + timeout
            seen = b""
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([fd], [], [], left)
                now = time.monotonic()
                if not ready:
                    continue
                data = os.read(fd, 1 << 16)
                if not data:
                    return None  # the stream ended (the viewer exited) without a record
                seen = seen[-64:] + data
                if pattern.search(seen):
                    return now
            return None
        finally:
            subprocess.run([*self.tmux, "pipe-pane", "-t", self.name], capture_output=True)
            os.close(fd)
            fifo.unlink(missing_ok=True)

    def screen(self) -> str:
        out = subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return out.stdout

    def send(self, key: str) -> float:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, key], check=True)
        return time.monotonic()

    def wait_screen(self, test: Callable[[str], bool], timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = time.monotonic()
            if test(self.screen()):
                return now
            time.sleep(0.005)
        return None

    def tree(self) -> list[int]:
        """The viewer's process and its live descendants (phasef's summary worker, for one)."""
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    parents[int(entry)] = int(stat_fields(int(entry))[1])
                except (OSError, IndexError, ValueError):
                    pass
        tree, frontier = [self.pid], [self.pid]
        while frontier:
            frontier = [pid for pid, parent in parents.items() if parent in frontier]
            tree.extend(frontier)
        return tree

    def cpu_s(self) -> float:
        """CPU seconds of the process tree: live processes, plus children already waited for (cutime, cstime)."""
        total = 0.0
        for pid in self.tree():
            try:
                fields = stat_fields(pid)
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
            if pid == self.pid:
                total += int(fields[13]) + int(fields[14])
        return total / TICKS

    def rss_anon_mb(self) -> float:
        """Private memory (RssAnon) of the process tree."""
        total = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/status") as fh:
                    for line in fh:
                        if line.startswith("RssAnon:"):
                            total += int(line.split()[1])
            except OSError:
                if pid == self.pid:
                    return float("nan")
        return total / 1024

    def wait_quiet(self, threshold: float = 0.05, window: float = 1.0, timeout: float = 300.0) -> float:
        """When the process began a ``window`` of using less than ``threshold`` of a core (its work was done)."""
        deadline = time.monotonic() + timeout
        last_t, last_cpu = time.monotonic(), self.cpu_s()
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now, cpu = time.monotonic(), self.cpu_s()
            busy = (cpu - last_cpu) / max(1e-6, now - last_t)
            last_t, last_cpu = now, cpu
            if busy < threshold:
                quiet_since = quiet_since or now
                if now - quiet_since >= window:
                    return quiet_since
            else:
                quiet_since = None
        return time.monotonic()

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-session", "-t", self.name], capture_output=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists(f"/proc/{self.pid}"):
            time.sleep(0.02)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


# -- the measurements ------------------------------------------------------------------------------------------------
SCREEN_PROBE = "stream"
"""How the first screen is seen: ``stream`` (the pane's output as tmux reads it) or ``poll`` (``capture-pane``)."""


def opened(socket: Path, name: str, argv: list[str], path: Path, label: str) -> tuple[Pane, float | None]:
    """The viewer started on ``path`` in a pane, and when its first screen (a record) was up (None: never)."""
    streamed = SCREEN_PROBE == "stream"
    pane = Pane(socket, [*argv, str(path)], f"{name}-{label}", gated=streamed)
    try:
        if streamed:
            return pane, pane.start_streamed(socket.parent / f"{name}-{label}.out", RECORD_BYTES, timeout=120)
        return pane, pane.wait_screen(lambda s: RECORD.search(s) is not None, timeout=120)
    except BaseException:
        pane.close()
        raise


def probe_cost(socket: Path, seconds: float = 3.0) -> float:
    """CPU (% of one core) that reading a pane with ``capture-pane`` every 5 ms takes: the tmux clients started
    and the tmux server's share, on a pane that shows a still screen."""
    pane = Pane(socket, ["sh", "-c", "seq 1 40; exec sleep 60"], "probe-cost")
    try:
        time.sleep(0.3)
        server = int(
            subprocess.run([*pane.tmux, "display-message", "-p", "#{pid}"], capture_output=True, text=True).stdout
        )

        def server_cpu() -> float:
            fields = stat_fields(server)
            return (int(fields[11]) + int(fields[12])) / TICKS

        before = os.times()
        s0, t0 = server_cpu(), time.monotonic()
        pane.wait_screen(lambda _: False, timeout=seconds)
        after = os.times()
        used = after.children_user - before.children_user + after.children_system - before.children_system
        used += after.user - before.user + after.system - before.system + server_cpu() - s0
        return 100.0 * used / (time.monotonic() - t0)
    finally:
        pane.close()


def warm_up(socket: Path, name: str, argv: list[str], path: Path, linger_s: float = 2.0) -> None:
    """One start of each viewer, not measured, left running past its first screen: what a start keeps for the next
    (phasef's start-up cache, ``phasef_tui/startup_cache.py``; the page cache for both) is there, as after any use."""
    pane, _ = opened(socket, name, argv, path, "warm-up")
    try:
        time.sleep(linger_s)
    finally:
        pane.close()


def measure_open(socket: Path, name: str, argv: list[str], path: Path, idle_s: float) -> dict[str, float]:
    pane, shown = opened(socket, name, argv, path, "open")
    try:
        sent = pane.send("End")
        if name == "phasef":
            last = pane.wait_screen(lambda s: PHASEF_LAST.search(s) is not None, timeout=300)
        else:
            last = pane.wait_screen(lambda s: LAST_EPISODE in s, timeout=300)
        done = pane.wait_quiet()
        rss = pane.rss_anon_mb()
        t0, c0 = time.monotonic(), pane.cpu_s()
        time.sleep(idle_s)
        idle = 100.0 * (pane.cpu_s() - c0) / (time.monotonic() - t0)
        return {
            "first_screen_s": (shown - pane.started) if shown else float("nan"),
            "end_last_record_s": (last - sent) if last else float("nan"),
            "summary_done_s": done - pane.started,
            "rss_anon_mb": rss,
            "idle_cpu_pct": idle,
        }
    finally:
        pane.close()


def first_screen_only(socket: Path, name: str, argv: list[str], path: Path) -> float:
    """Seconds from launch to the first record on screen (NaN: none within the timeout); the program is closed."""
    pane, shown = opened(socket, name, argv, path, "open")
    try:
        return (shown - pane.started) if shown else float("nan")
    finally:
        pane.close()


def measure_flood(socket: Path, name: str, argv: list[str], workdir: Path, rate: int, seconds: float) -> float:
    """Median delay between a record being written and it being the newest record on screen."""
    path = workdir / f"flood-{name}.jsonl"
    generate(path, 1.0)  # a small file to start from
    pane = Pane(socket, [*argv, str(path)], f"{name}-flood")
    try:
        pane.wait_screen(lambda s: RECORD.search(s) is not None, timeout=60)
        time.sleep(1.0)
        log: mp.Queue[Any] = mp.Queue()
        start_at = time.monotonic() + 0.2
        writer = mp.Process(target=append, args=(str(path), rate, seconds, start_at, log))
        writer.start()
        seen: list[tuple[float, int]] = []
        newest = -1
        while time.monotonic() < start_at + seconds:
            now = time.monotonic()
            seqs = [int(m) for m in SEQ.findall(pane.screen())]
            if seqs and max(seqs) > newest:
                newest = max(seqs)
                seen.append((now, newest))
            time.sleep(0.01)
        written, _ = log.get(timeout=30)
        writer.join(10)
    finally:
        pane.close()
        path.unlink(missing_ok=True)
    delays = []
    wi = 0
    for when, seq in seen:
        while wi < len(written) and written[wi][0] < seq:
            wi += 1
        if wi == len(written):
            break
        delays.append(max(0.0, when - written[wi][1]))
    return statistics.median(delays) if delays else float("nan")


def trace_file(size_mb: float) -> Path:
    """The generated trace plus a last record that is a death tick of a unique episode."""
    path = Path(f"/tmp/phasef-compare-{size_mb:g}mb.jsonl")
    if not path.exists() or abs(path.stat().st_size - size_mb * (1 << 20)) > (2 << 20):
        print(f"generating {path} ({size_mb:g} MiB) ...", flush=True)
        generate(path, size_mb)
        last = {
            "schema": "phasef.dirty_trace/1",
            "kind": "tick",
            "run_id": "bench",
            "episode": LAST_EPISODE,
            "ts": time.time(),
            "tick": 0,
            "actor": "model",
            "outcome": "death",
            "error_class": "Fatal",
            "observation": "the last record",
        }
        with open(path, "ab") as fh:
            fh.write(orjson.dumps(last) + b"\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1024.0, help="size of the generated trace (1 GB default)")
    parser.add_argument("--runs", type=int, default=3, help="runs per viewer, interleaved (medians reported)")
    parser.add_argument("--idle-s", type=float, default=5.0, help="seconds of idle CPU measured after the work")
    parser.add_argument("--rate", type=int, default=10_000, help="records/s appended in the flood test")
    parser.add_argument("--flood-s", type=float, default=8.0, help="seconds of flood")
    parser.add_argument("--toolong-venv", type=Path, default=Path(tempfile.gettempdir()) / "phasef-toolong-venv")
    parser.add_argument("--tl", help="an installed toolong `tl` to use instead of the venv's")
    parser.add_argument(
        "--source-only", action="store_true", help="do not compile phasef's modules to bytecode first (see main)"
    )
    parser.add_argument(
        "--screen-probe",
        choices=("stream", "poll"),
        default="stream",
        help="how the first screen is seen: the pane's output streamed (default) or capture-pane every 5 ms",
    )
    parser.add_argument(
        "--probe-cost", action="store_true", help="also print the CPU that reading the screen every 5 ms takes"
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="do not start the smallest Textual app in each run (textual_floor_app.py: the floor of a first screen)",
    )
    args = parser.parse_args()
    global SCREEN_PROBE
    SCREEN_PROBE = args.screen_probe
    if shutil.which("tmux") is None:
        print("tmux is needed", file=sys.stderr)
        return 2
    tl = toolong_command(args.toolong_venv, args.tl)
    path = trace_file(args.size_mb)
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache for both
    if not args.source_only:
        # phasef's own modules as bytecode, as pip leaves toolong's (and any installed package's): an editable checkout
        # run with PYTHONDONTWRITEBYTECODE set would otherwise compile its ~50 modules again at every launch
        packages = [str(REPO / p) for p in ("phasef_tui", "pipeline", "widgets")]
        subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True)
    workdir = Path(tempfile.mkdtemp(prefix="phasef-compare-"))
    socket = workdir / "tmux.sock"
    os.environ["PYTHONPATH"] = str(REPO)  # (inherited by tmux's server, hence by phasef's viewer)
    viewers = {"phasef": (phasef_command(False), phasef_command(True)), "toolong": (tl, tl)}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in viewers}
    floor_argv = [sys.executable, str(REPO / "benchmarks" / "textual_floor_app.py")]
    floors: list[float] = []
    loads: list[float] = []
    probe_pct: float | None = None
    try:
        if args.probe_cost:
            probe_pct = probe_cost(socket)
        for name, (static_argv, _) in viewers.items():
            warm_up(socket, name, static_argv, path)
        if not args.no_floor:
            warm_up(socket, "floor", floor_argv, path, linger_s=0.5)
        for run in range(max(1, args.runs)):
            order = list(viewers) if run % 2 == 0 else list(reversed(viewers))
            for name in order:
                static_argv, follow_argv = viewers[name]
                loads.append(os.getloadavg()[0])
                figures = measure_open(socket, name, static_argv, path, args.idle_s)
                figures["flood_delay_p50_s"] = measure_flood(
                    socket, name, follow_argv, workdir, args.rate, args.flood_s
                )
                runs[name].append(figures)
                print(f"run {run + 1} {name:8s} " + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
            if not args.no_floor:
                floors.append(first_screen_only(socket, "floor", floor_argv, path))
                print(f"run {run + 1} floor    first_screen_s {floors[-1]:.3f}", flush=True)
    finally:
        subprocess.run(["tmux", "-S", str(socket), "-f", "/dev/null", "kill-server"], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)

    result = {
        name: {key: round(statistics.median(r[key] for r in values), 3) for key in FIGURES}
        for name, values in runs.items()
    }
    size = path.stat().st_size
    print(
        f"\ntrace {path} ({size / 1e9:.2f} GB), {COLS}x{ROWS} in tmux, median of {args.runs} interleaved runs; "
        f"load average during the runs {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores; first screen "
        + (
            "seen in the pane's output stream"
            if SCREEN_PROBE == "stream"
            else "seen by reading the screen (capture-pane) every 5 ms"
        )
        + (f"; reading the screen every 5 ms takes {probe_pct:.0f} % of a core" if probe_pct is not None else "")
    )
    print(f"{'figure':22s} {'phasef':>10s} {'toolong':>10s} {'ratio':>8s}")
    for key in FIGURES:
        p, t = result["phasef"][key], result["toolong"][key]
        ratio = f"{p / t:.2f}x" if t else "-"
        print(f"{key:22s} {p:10.3f} {t:10.3f} {ratio:>8s}")
    if floors:
        floor = statistics.median(floors)
        print(
            f"Textual's floor (textual_floor_app.py, the smallest Textual app showing the file's first lines, in the "
            f"same runs): first screen {floor:.3f} s (runs {', '.join(f'{f:.3f}' for f in floors)}); phasef's "
            f"{result['phasef']['first_screen_s']:.3f} s is {result['phasef']['first_screen_s'] / floor:.2f}x it"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
