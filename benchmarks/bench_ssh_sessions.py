"""Operator sessions over SSH (``phasef serve --ssh``): the pre-forked session server against a new interpreter per
session, in the same run, with the real OpenSSH client on 127.0.0.1.

    python benchmarks/bench_ssh_sessions.py [--sessions 20] [--single 5] [--size 120x35] [--local] [--in-process]

A real supervisor runs a small plan up to a waiting gate. Two servers serve that session at once: ``phasef serve``
(sessions forked from the session server) and ``phasef serve --no-prefork`` (each session a new interpreter: the
path before the session server). Each client is ``ssh -tt`` in a PTY of its own; its first frame is the moment its
screen shows the session's content (the gate prompt, from the journal: a frame with data, not just chrome).

- first frame, one session: ``--single`` sessions one after the other, the two servers alternating (median);
- first frame, N opened at once (median and max), for each server in turn;
- memory per session while N are open, PSS from /proc/PID/smaps_rollup (shared pages split between the processes
  that map them): the session's process, plus for the pre-forked server the session server's PSS divided by N, plus
  the SSH server's growth divided by N; RSS and private pages beside it; for a forked session, its writable
  anonymous pages split (from /proc/PID/pagemap, where the physical frames can be read) into those copied from the
  session server (a page it wrote to, a reference count being enough) and new ones;
- CPU seconds a session's process used: one session, from its start to just after its first frame (median); N at
  once, from its start to 1 s after the last first frame (median); less moved by the machine's load than the times;
- idle CPU per session over 5 s with N open.

``--local`` adds ``phasef attach`` started directly in a PTY (no SSH); ``--in-process`` the design not chosen (N apps
in one process, see docs/ssh.md). The load average is printed at the start and the end: the machine is shared. The
last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.spine_helpers import ONE_GATE_PROMPT, wait_for  # noqa: E402
from tests.ssh_helpers import (  # noqa: E402
    ANSI,
    PtyClient,
    Served,
    log_events,
    memory_kb,
    open_clients,
    ssh_argv,
)

MARKER = ONE_GATE_PROMPT
IDLE_WINDOW_S = 5.0


@dataclass
class Mode:
    """One way of serving: its server process and log, and what was measured."""

    name: str
    server: subprocess.Popen[str] | None = None
    port: int = 0
    log: Path | None = None
    single: list[float] = field(default_factory=list)
    login: list[float] = field(default_factory=list)
    single_cpu: list[float] = field(default_factory=list)
    concurrent: list[float] = field(default_factory=list)
    concurrent_cpu: list[float] = field(default_factory=list)
    pss_kb: list[int] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    private_kb: list[int] = field(default_factory=list)
    zygote_pss_kb: int = 0
    copied_kb: list[int] = field(default_factory=list)
    new_kb: list[int] = field(default_factory=list)
    server_growth_kb: float = 0.0
    server_rss_kb: int = 0
    idle_cpu: float = 0.0
    ended: int = 0

    def per_session_pss_mb(self, n: int) -> float:
        return (statistics.mean(self.pss_kb) + self.zygote_pss_kb / n + self.server_growth_kb) / 1024

    def per_session_rss_mb(self) -> float:
        return (statistics.mean(self.rss_kb) + self.server_growth_kb) / 1024


def _writable_anonymous(pid: int) -> list[tuple[int, int]]:
    ranges = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        if parts[1].startswith("rw") and (len(parts) < 6 or parts[5] in ("[heap]", "[stack]")):
            start, end = (int(v, 16) for v in parts[0].split("-"))
            ranges.append((start, end))
    return ranges


def _frames(pid: int, ranges: list[tuple[int, int]]) -> dict[int, int]:
    """Resident page -> physical frame, from /proc/PID/pagemap (frames read as 0 without CAP_SYS_ADMIN)."""
    frames = {}
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for start, end in ranges:
            pagemap.seek(start // 4096 * 8)
            for i, (entry,) in enumerate(struct.iter_unpack("Q", pagemap.read((end - start) // 4096 * 8))):
                if entry >> 63:  # present
                    frames[start // 4096 + i] = entry & ((1 << 55) - 1)
    return frames


def copied_and_new_kb(pid: int, zygote: int) -> tuple[int, int] | None:
    """A forked session's anonymous pages that are no longer the session server's (copied on write) and those the
    session server does not have at all (new); None where frames cannot be read."""
    mine = _frames(pid, _writable_anonymous(pid))
    theirs = _frames(zygote, _writable_anonymous(zygote))
    if not any(mine.values()):
        return None
    copied = sum(1 for page, frame in mine.items() if page in theirs and theirs[page] != frame)
    new = sum(1 for page in mine if page not in theirs)
    return copied * 4, new * 4


def idle_cpu_per_session(pids: list[int], sessions: int) -> float:
    """Share of one core each idle session costs over IDLE_WINDOW_S (utime+stime of ``pids``, over ``sessions``)."""

    def ticks() -> int:
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total

    first = ticks()
    time.sleep(IDLE_WINDOW_S)
    return (ticks() - first) / os.sysconf("SC_CLK_TCK") / IDLE_WINDOW_S / sessions


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used so far: a figure that the machine's load moves less than the
    wall time to a first frame does."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stats(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):5.2f} s  p90 {p90:5.2f} s  max {ordered[-1]:5.2f} s"


def in_process_worker(session: Path, n: int, cols: int, rows: int) -> None:
    """The design not chosen: N Textual apps in one process and one event loop, each with a driver that writes its
    frames to a buffer (as a driver per SSH channel would write to the channel). Prints JSON figures."""
    from textual import events
    from textual.driver import Driver
    from textual.geometry import Size

    from phasef_tui.app import PhasefApp, load_keys
    from phasef_tui.session_source import SessionSource, session_config_path
    from pipeline.control import socket_path

    async def run() -> None:
        before = memory_kb(os.getpid())
        started = time.perf_counter()
        firsts: dict[int, float] = {}
        done = asyncio.Event()

        def driver_for(index: int) -> type[Driver]:
            class ChannelDriver(Driver):
                buffer = b""

                @property
                def is_headless(self) -> bool:
                    return False

                def _get_terminal_size(self) -> tuple[int, int]:
                    return cols, rows

                def write(self, data: str) -> None:
                    if index in firsts:
                        return
                    self.buffer = (self.buffer + data.encode())[-200_000:]
                    if MARKER.encode() in ANSI.sub(b"", self.buffer):
                        firsts[index] = time.perf_counter() - started
                        if len(firsts) == n:
                            done.set()

                def start_application_mode(self) -> None:
                    size = Size(cols, rows)
                    asyncio.get_running_loop().create_task(self._app._post_message(events.Resize(size, size)))

                def disable_input(self) -> None:
                    pass

                def stop_application_mode(self) -> None:
                    pass

            return ChannelDriver

        apps = []
        for i in range(n):
            source = SessionSource(session, operator=f"bench{i}", control_socket=socket_path(session))
            keymap, problems = load_keys(session_config_path(session))
            app = PhasefApp(source, keymap=keymap, keymap_problems=problems)
            app.driver_class = driver_for(i)
            apps.append(app)
        tasks = [asyncio.create_task(app.run_async()) for app in apps]
        await asyncio.wait_for(done.wait(), 300)
        await asyncio.sleep(1.0)
        after = memory_kb(os.getpid())
        cpu_before = time.process_time()
        await asyncio.sleep(IDLE_WINDOW_S)
        idle_cpu = (time.process_time() - cpu_before) / IDLE_WINDOW_S / n
        for app in apps:
            app.exit()
        await asyncio.wait(tasks, timeout=30)
        result = {
            "firsts": [firsts[i] for i in range(n)],
            "rss_growth_kb": (after["Rss"] - before["Rss"]) / n,
            "pss_growth_kb": (after["Pss"] - before["Pss"]) / n,
            "idle_cpu": idle_cpu,
        }
        sys.__stdout__.write(json.dumps(result) + "\n")

    asyncio.run(run())


async def one_session(mode: Mode, ssh: list[str], env: dict[str, str], size: tuple[int, int], cwd: Path) -> None:
    assert mode.log is not None
    (c,) = await open_clients([ssh], env, size, 120, cwd, MARKER)
    mode.single.append(c.first_frame or 0.0)
    start = log_events(mode.log, "session_start")[-1]
    mode.single_cpu.append(cpu_s(start["pid"]))  # from its start to (just after) its first frame
    begun = datetime.fromisoformat(start["ts"]).timestamp()
    mode.login.append(begun - c.wall_started)
    await c.stop()
    mode.ended += 1
    log = mode.log
    wait_for(lambda: len(log_events(log, "session_end")) == mode.ended, 30, "the session to end")


async def many_sessions(
    mode: Mode, ssh: list[str], n: int, env: dict[str, str], size: tuple[int, int], cwd: Path
) -> None:
    assert mode.log is not None and mode.server is not None
    server_before = memory_kb(mode.server.pid)["Rss"]
    clients = await open_clients([ssh] * n, env, size, 300, cwd, MARKER)
    mode.concurrent = [c.first_frame or 0.0 for c in clients]
    await asyncio.sleep(1.0)  # settle after the first frame before reading memory
    pids = [e["pid"] for e in log_events(mode.log, "session_start")[-n:]]
    mode.concurrent_cpu = [cpu_s(pid) for pid in pids]  # from its start to 1 s after the last first frame
    for pid in pids:
        memory = memory_kb(pid)
        mode.pss_kb.append(memory["Pss"])
        mode.rss_kb.append(memory["Rss"])
        mode.private_kb.append(memory["Private_Clean"] + memory["Private_Dirty"])
    watched = [*pids, mode.server.pid]
    zygotes = log_events(mode.log, "session_server")
    if zygotes:
        mode.zygote_pss_kb = memory_kb(zygotes[-1]["pid"])["Pss"]
        watched.append(zygotes[-1]["pid"])
        for pid in pids:
            split = copied_and_new_kb(pid, zygotes[-1]["pid"])
            if split is not None:
                mode.copied_kb.append(split[0])
                mode.new_kb.append(split[1])
    server_after = memory_kb(mode.server.pid)["Rss"]
    mode.server_rss_kb = server_after
    mode.server_growth_kb = (server_after - server_before) / n
    mode.idle_cpu = await asyncio.to_thread(idle_cpu_per_session, watched, n)
    await asyncio.gather(*(c.stop() for c in clients))
    mode.ended += n
    log = mode.log
    wait_for(lambda: len(log_events(log, "session_end")) == mode.ended, 60, "every session to end")


async def local_sessions(
    served: Served, n: int, single: int, env: dict[str, str], size: tuple[int, int]
) -> tuple[list[float], list[float], float]:
    """``phasef attach`` started directly in a PTY (no SSH): first frames alone and N at once, PSS per session."""
    attach = [sys.executable, "-m", "phasef_tui.cli", "attach", str(served.session), "--as", "bench"]
    alone = []
    for _ in range(single):
        (c,) = await open_clients([attach], env, size, 120, served.folder, MARKER)
        alone.append(c.first_frame or 0.0)
        await c.stop()
    clients: list[PtyClient] = await open_clients([attach] * n, env, size, 300, served.folder, MARKER)
    await asyncio.sleep(1.0)
    pss = statistics.mean(memory_kb(c.child.pid)["Pss"] for c in clients if c.child and c.child.pid) / 1024
    await asyncio.gather(*(c.stop() for c in clients))
    return alone, [c.first_frame or 0.0 for c in clients], pss


async def bench(args: argparse.Namespace) -> dict[str, object]:
    n = args.sessions
    cols, rows = (int(v) for v in args.size.split("x"))
    size = (cols, rows)
    work = Path(tempfile.mkdtemp(prefix="phasef-bench-ssh-"))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    env.pop("LINES", None)
    env.pop("COLUMNS", None)
    load_start = os.getloadavg()
    print(
        f"phasef over SSH: {n} concurrent sessions, {cols}x{rows}, {os.cpu_count()} cores, load average "
        f"{load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} at start; first frame = the gate prompt on "
        "screen; the real OpenSSH client on 127.0.0.1",
        flush=True,
    )
    served = Served(work, max_sessions=n, serve=False)
    prefork, spawn = Mode("prefork"), Mode("spawn")
    local: tuple[list[float], list[float], float] | None = None
    in_process = None
    try:
        for mode, extra in ((prefork, ()), (spawn, ("--no-prefork",))):
            mode.log = work / f"{mode.name}.jsonl"
            mode.server, mode.port, banner = served.launch_server(*extra, log=mode.log)
            if mode is prefork:
                server_line = next((line for line in banner if line.startswith("session server")), None)
                if server_line is None:
                    raise SystemExit(f"the session server did not start: {banner}")
                print(server_line, flush=True)
        ssh = {
            m.name: ssh_argv(m.port, served.victor, "-o", "SetEnv=COLORTERM=truecolor", "-tt") for m in (prefork, spawn)
        }
        for i in range(args.single):  # interleaved, the order alternating, so that load changes hit both alike
            for mode in (prefork, spawn) if i % 2 == 0 else (spawn, prefork):
                await one_session(mode, ssh[mode.name], env, size, work)
        for mode in (spawn, prefork):
            await many_sessions(mode, ssh[mode.name], n, env, size, work)
        if args.local:
            local = await local_sessions(served, n, args.single, env, size)
        for mode in (prefork, spawn):
            assert mode.server is not None
            mode.server.send_signal(signal.SIGTERM)
            if mode.server.wait(60) != 0:
                print(f"{mode.name} server exited {mode.server.returncode}")
        if args.in_process:
            worker_argv = [sys.executable, __file__, "--in-process-worker", str(served.session)]
            worker = subprocess.run(
                [*worker_argv, "--sessions", str(n), "--size", args.size],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
            )
            lines = [line for line in worker.stdout.splitlines() if line.startswith("{")]
            if worker.returncode == 0 and lines:
                in_process = json.loads(lines[-1])
            else:
                print(f"in-process design not measured: exit {worker.returncode}: {worker.stderr[-500:]}")
        run_went_on = served.supervisor.poll() is None
    finally:
        for mode in (prefork, spawn):
            if mode.server is not None and mode.server.poll() is None:
                os.killpg(mode.server.pid, signal.SIGKILL)
        served.close()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    load_end = os.getloadavg()

    print()
    print(f"{'':34}{'spawn (before)':>16}{'pre-forked':>16}{'after/before':>14}")

    def row(name: str, before: float, after: float, unit: str, fmt: str = ".2f") -> None:
        cells = f"{format(before, fmt):>{15 - len(unit)}} {unit}{format(after, fmt):>{15 - len(unit)}} {unit}"
        print(f"{name:34}{cells}{after / before if before else 0:>14.2f}")

    med = statistics.median
    row(f"first frame, 1 session (median {args.single})", med(spawn.single), med(prefork.single), "s")
    row(f"first frame, {n} at once, median", med(spawn.concurrent), med(prefork.concurrent), "s")
    row(f"first frame, {n} at once, max", max(spawn.concurrent), max(prefork.concurrent), "s")
    row("CPU to first frame, 1 session", med(spawn.single_cpu), med(prefork.single_cpu), "s")
    row(f"CPU per session, {n} at once (+1 s)", med(spawn.concurrent_cpu), med(prefork.concurrent_cpu), "s")
    row("memory per session, PSS", spawn.per_session_pss_mb(n), prefork.per_session_pss_mb(n), "MB", ".1f")
    row(
        "  the session's process, PSS",
        statistics.mean(spawn.pss_kb) / 1024,
        statistics.mean(prefork.pss_kb) / 1024,
        "MB",
        ".1f",
    )
    row(
        "  its private pages",
        statistics.mean(spawn.private_kb) / 1024,
        statistics.mean(prefork.private_kb) / 1024,
        "MB",
        ".1f",
    )
    if prefork.copied_kb:
        print(f"{'    copied from the session server':34}{'':16}{statistics.mean(prefork.copied_kb) / 1024:>13.1f} MB")
        print(f"{'    new (not in the session server)':34}{'':16}{statistics.mean(prefork.new_kb) / 1024:>13.1f} MB")
    row("  session server's PSS / N", 0.0, prefork.zygote_pss_kb / n / 1024, "MB", ".1f")
    row("  SSH server's growth / N", spawn.server_growth_kb / 1024, prefork.server_growth_kb / 1024, "MB", ".2f")
    row("memory per session, RSS", spawn.per_session_rss_mb(), prefork.per_session_rss_mb(), "MB", ".1f")
    row("idle CPU per session", 100 * spawn.idle_cpu, 100 * prefork.idle_cpu, "%", ".1f")
    print()
    for mode in (spawn, prefork):
        print(f"{mode.name:8} 1 session:  {stats(mode.single)}  (all: {', '.join(f'{v:.2f}' for v in mode.single)})")
        print(f"{mode.name:8} {n} at once: {stats(mode.concurrent)}")
        print(
            f"{mode.name:8} from starting ssh to the TUI's process started (connection, key exchange, login, PTY): "
            f"median {med(mode.login):.2f} s"
        )
    if local:
        print(
            f"local PTY, no SSH: 1 session median {med(local[0]):.2f} s; {n} at once {stats(local[1])}; "
            f"PSS {local[2]:.1f} MB per session"
        )
    if in_process:
        print(
            f"one process, a driver per session: {n} at once {stats(in_process['firsts'])}; "
            f"PSS {in_process['pss_growth_kb'] / 1024:.1f} MB per session; "
            f"idle CPU {100 * in_process['idle_cpu']:.1f} %"
        )
    print(f"the supervised run went on: {run_went_on}")
    print(f"load average at the end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")

    def figures(mode: Mode) -> dict[str, float]:
        return {
            "first_frame_one_s": round(med(mode.single), 3),
            "first_frame_n_median_s": round(med(mode.concurrent), 3),
            "first_frame_n_max_s": round(max(mode.concurrent), 3),
            "cpu_one_s": round(med(mode.single_cpu), 3),
            "cpu_n_median_s": round(med(mode.concurrent_cpu), 3),
            "pss_per_session_mb": round(mode.per_session_pss_mb(n), 2),
            "rss_per_session_mb": round(mode.per_session_rss_mb(), 2),
            "idle_cpu_pct": round(100 * mode.idle_cpu, 2),
            "private_per_session_mb": round(statistics.mean(mode.private_kb) / 1024, 2),
            **(
                {
                    "copied_per_session_mb": round(statistics.mean(mode.copied_kb) / 1024, 2),
                    "new_per_session_mb": round(statistics.mean(mode.new_kb) / 1024, 2),
                }
                if mode.copied_kb
                else {}
            ),
        }

    return {
        "sessions": n,
        "load_start": round(load_start[0], 2),
        "load_end": round(load_end[0], 2),
        "spawn": figures(spawn),
        "prefork": figures(prefork),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--single", type=int, default=5, help="sessions timed alone, one after another, per mode")
    parser.add_argument("--size", default="120x35", help="terminal size COLSxROWS")
    parser.add_argument("--local", action="store_true", help="also time phasef attach in a local PTY (no SSH)")
    parser.add_argument("--in-process", action="store_true", help="also measure N apps in one process")
    parser.add_argument("--in-process-worker", metavar="SESSION", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process_worker:
        cols, rows = (int(v) for v in args.size.split("x"))
        in_process_worker(Path(args.in_process_worker), args.sessions, cols, rows)
        return
    result = asyncio.run(bench(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
