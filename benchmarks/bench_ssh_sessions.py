"""Operator sessions over SSH (``phasef serve --ssh``) against the same TUI started locally in a PTY, same run.

    python benchmarks/bench_ssh_sessions.py [--sessions 20] [--single 3] [--size 120x35]

A real supervisor runs a small plan up to a waiting gate. Then, for each mode, N clients start at once, each in a
pseudo-terminal of its own, and we time how long each takes until its screen shows the session's content (the gate
prompt, read from the journal: a first frame with data, not just the frame's chrome):

- ``local``: ``phasef attach`` started directly in a PTY (no SSH): the baseline.
- ``ssh``: ``ssh -tt`` (the real OpenSSH client) to ``phasef serve --ssh``, which starts the same ``phasef attach``
  in a PTY per session on the server.

Memory per session is what the server side pays: the TUI process's PSS (shared pages split between the processes
that map them) and RSS, plus, for ``ssh``, the growth of the server process divided by N. ``--single`` adds the
latency of one session alone (no contention), repeated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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

from phasef_tui.ssh.pty_child import PtyChild  # noqa: E402
from tests.spine_helpers import ONE_GATE_PLAN, ONE_GATE_PROMPT  # noqa: E402
from tests.ssh_helpers import ssh_argv  # noqa: E402

PLAN = ONE_GATE_PLAN
MARKER = ONE_GATE_PROMPT
IDLE_WINDOW_S = 5.0
ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[PX^_][^\x1b]*\x1b\\|\x1b.")


def memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in kB from /proc/PID/smaps_rollup."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Pss", "Rss"):
            values[name] = int(rest.split()[0])
    return values["Pss"], values["Rss"]


class Client:
    """One program in its own PTY; notes when its screen first shows the marker."""

    def __init__(self, argv: list[str], env: dict[str, str], size: tuple[int, int], cwd: Path) -> None:
        self.argv, self.env, self.size, self.cwd = argv, env, size, cwd
        self.buffer = b""
        self.started = 0.0
        self.wall_started = 0.0
        self.first_frame: float | None = None
        self.seen = asyncio.Event()
        self.child: PtyChild | None = None

    def _output(self, data: bytes) -> None:
        if self.first_frame is not None:
            return
        self.buffer = (self.buffer + data)[-200_000:]
        if MARKER.encode() in ANSI.sub(b"", self.buffer):
            self.first_frame = time.perf_counter() - self.started
            self.seen.set()

    async def start(self) -> None:
        self.child = PtyChild(self._output)
        self.started = time.perf_counter()
        self.wall_started = time.time()
        await self.child.start(self.argv, self.env, self.cwd, (*self.size, 0, 0))

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop(5.0)


async def open_clients(
    argvs: list[list[str]], env: dict[str, str], size: tuple[int, int], timeout: float, cwd: Path
) -> list[Client]:
    clients = [Client(argv, env, size, cwd) for argv in argvs]
    await asyncio.gather(*(c.start() for c in clients))
    try:
        await asyncio.wait_for(asyncio.gather(*(c.seen.wait() for c in clients)), timeout)
    except TimeoutError:
        missing = [c for c in clients if c.first_frame is None]
        tail = ANSI.sub(b"", missing[0].buffer)[-400:].decode(errors="replace")
        await asyncio.gather(*(c.stop() for c in clients))
        raise SystemExit(
            f"{len(missing)} of {len(clients)} clients showed no first frame in {timeout} s; one ends: {tail!r}"
        ) from None
    return clients


async def in_process_worker(session: Path, n: int, cols: int, rows: int) -> None:
    """The other design: N Textual apps in one process and one event loop, each with a driver that writes its
    frames to a buffer (as a driver per SSH channel would write to the channel). Prints JSON figures."""
    from textual import events
    from textual.driver import Driver
    from textual.geometry import Size

    from phasef_tui.app import PhasefApp, load_keys
    from phasef_tui.session_source import SessionSource, session_config_path
    from pipeline.control import socket_path

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
        "rss_growth_kb": (after[1] - before[1]) / n,
        "pss_growth_kb": (after[0] - before[0]) / n,
        "idle_cpu": idle_cpu,
    }
    sys.__stdout__.write(json.dumps(result) + "\n")


def idle_cpu_per_session(pids: list[int]) -> float:
    """Share of one core each idle session uses, over IDLE_WINDOW_S (utime+stime from /proc)."""

    def ticks() -> int:
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total

    first = ticks()
    time.sleep(IDLE_WINDOW_S)
    return (ticks() - first) / os.sysconf("SC_CLK_TCK") / IDLE_WINDOW_S / len(pids)


def stats(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):5.2f} s  p90 {p90:5.2f} s  max {ordered[-1]:5.2f} s"


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def journal_has(session: Path, event_type: str) -> bool:
    path = session / "journal.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            if json.loads(line).get("type") == event_type:
                return True
        except json.JSONDecodeError:
            pass  # a line still being written
    return False


def log_events(path: Path, kind: str) -> list[dict]:  # type: ignore[type-arg]
    if not path.exists():
        return []
    return [e for e in (json.loads(line) for line in path.read_text().splitlines() if line) if e["event"] == kind]


async def bench(args: argparse.Namespace) -> None:
    import asyncssh

    n = args.sessions
    cols, rows = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="phasef-bench-ssh-"))
    (work / "config.toml").write_text(PLAN)
    session = work / "sessions" / "bench"
    py = sys.executable
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    env.pop("LINES", None)
    env.pop("COLUMNS", None)
    supervisor = subprocess.Popen(
        [py, "-m", "phasef_tui.cli", "run", "--headless", "--plain", "--config", "config.toml", "--session", "bench"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: journal_has(session, "gate_opened"), 60, "the plan to reach its gate")
        key = asyncssh.generate_private_key("ssh-ed25519", comment="bench")
        (work / "id_bench").write_bytes(key.export_private_key("openssh"))
        (work / "id_bench").chmod(0o600)
        keys = work / "authorized_keys"
        keys.write_text(f'environment="PHASEF_ROLE=viewer" {key.export_public_key("openssh").decode()}')
        keys.chmod(0o600)
        attach = [py, "-m", "phasef_tui.cli", "attach", str(session), "--as", "bench"]
        print(
            f"phasef over SSH: {n} concurrent sessions, {cols}x{rows}, {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f} at start; first frame = the gate prompt on screen",
            flush=True,
        )

        # baseline: the same client, locally in a PTY
        single_local = []
        for _ in range(args.single):
            (c,) = await open_clients([attach], env, (cols, rows), 120, work)
            single_local.append(c.first_frame or 0.0)
            await c.stop()
        local = await open_clients([attach] * n, env, (cols, rows), 300, work)
        await asyncio.sleep(1.0)  # settle after the first frame before reading memory
        local_pids = [c.child.pid for c in local if c.child and c.child.pid]
        local_mem = [memory_kb(pid) for pid in local_pids]
        local_idle = await asyncio.to_thread(idle_cpu_per_session, local_pids)
        await asyncio.gather(*(c.stop() for c in local))

        log = work / "ssh.jsonl"
        server = subprocess.Popen(
            [
                py,
                "-m",
                "phasef_tui.cli",
                "serve",
                "--ssh",
                "127.0.0.1:0",
                "--authorized-keys",
                str(keys),
                "--host-key",
                str(work / "host_key"),
                "--session",
                str(session),
                "--max-sessions",
                str(n),
                "--max-startups",
                str(n),
                "--per-source-max-startups",
                str(n),
                "--config",
                "config.toml",
                "--log",
                str(log),
            ],
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert server.stdout is not None
        port = 0
        for line in server.stdout:
            if line.startswith("listening on "):
                port = int(line.rsplit(":", 1)[1])
                break
        if not port:
            raise SystemExit("the SSH server did not start")
        ssh = ssh_argv(port, work / "id_bench", "-o", "SetEnv=COLORTERM=truecolor", "-tt", user="bench")
        server_before = memory_kb(server.pid)
        single_ssh, single_login = [], []
        for i in range(args.single):
            (c,) = await open_clients([ssh], env, (cols, rows), 120, work)
            single_ssh.append(c.first_frame or 0.0)
            begun = datetime.fromisoformat(log_events(log, "session_start")[-1]["ts"]).timestamp()
            single_login.append(begun - c.wall_started)
            await c.stop()
            wait_for(lambda i=i: len(log_events(log, "session_end")) == i + 1, 30, "the session to end")
        remote = await open_clients([ssh] * n, env, (cols, rows), 300, work)
        await asyncio.sleep(1.0)
        ssh_pids = [e["pid"] for e in log_events(log, "session_start")[args.single :]]
        ssh_mem = [memory_kb(pid) for pid in ssh_pids]
        server_after = memory_kb(server.pid)
        ssh_idle = await asyncio.to_thread(idle_cpu_per_session, [*ssh_pids, server.pid])
        ssh_idle = ssh_idle * (len(ssh_pids) + 1) / len(ssh_pids)  # the server's share spread over the sessions
        await asyncio.gather(*(c.stop() for c in remote))
        wait_for(lambda: len(log_events(log, "session_end")) == n + args.single, 60, "every session to end")
        server.send_signal(signal.SIGTERM)
        code = server.wait(30)
        run_went_on = not journal_has(session, "gate_decided") and supervisor.poll() is None

        in_process = None
        if not args.no_in_process:
            worker = subprocess.run(
                [py, __file__, "--in-process-worker", str(session), "--sessions", str(n), "--size", args.size],
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
    finally:
        for proc in (server, supervisor):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(work)], check=False)

    growth_kb = (server_after[1] - server_before[1]) / n
    l_pss = statistics.mean(m[0] for m in local_mem) / 1024
    l_rss = statistics.mean(m[1] for m in local_mem) / 1024
    s_pss = (statistics.mean(m[0] for m in ssh_mem) + growth_kb) / 1024
    s_rss = (statistics.mean(m[1] for m in ssh_mem) + growth_kb) / 1024
    l_ff = [c.first_frame or 0.0 for c in local]
    s_ff = [c.first_frame or 0.0 for c in remote]
    cols_ = ["local PTY (baseline)", "SSH, PTY per session"] + (["one process, driver each"] if in_process else [])
    print()
    print(f"{'':30}" + "".join(f"{c:>26}" for c in cols_) + f"{'SSH/local':>11}")

    def row(name: str, values: list[float], unit: str, fmt: str = ".2f") -> None:
        cells = "".join(f"{format(v, fmt):>{26 - len(unit) - 1}} {unit}" for v in values)
        print(f"{name:30}{cells}{values[1] / values[0]:>11.2f}")

    ip = in_process or {}

    def extra(value: float) -> list[float]:
        return [value] if in_process else []

    row("first frame, 1 session", [statistics.median(single_local), statistics.median(single_ssh)], "s")
    row(
        f"first frame, {n} at once, median",
        [statistics.median(l_ff), statistics.median(s_ff), *extra(statistics.median(ip.get("firsts", [0])))],
        "s",
    )
    row(f"first frame, {n} at once, max", [max(l_ff), max(s_ff), *extra(max(ip.get("firsts", [0])))], "s")
    row("memory per session, PSS", [l_pss, s_pss, *extra(ip.get("pss_growth_kb", 0) / 1024)], "MB", ".1f")
    row("memory per session, RSS", [l_rss, s_rss, *extra(ip.get("rss_growth_kb", 0) / 1024)], "MB", ".1f")
    row("idle CPU per session", [100 * local_idle, 100 * ssh_idle, *extra(100 * ip.get("idle_cpu", 0))], "%", ".1f")
    print()
    print(f"local, {n} at once: {stats(l_ff)}")
    print(f"ssh,   {n} at once: {stats(s_ff)}")
    if in_process:
        print(f"one process, {n} at once: {stats(in_process['firsts'])}")
    print(
        f"ssh, 1 session: {statistics.median(single_login):.2f} s from starting ssh to the TUI process being "
        f"spawned (connection, key exchange, login, PTY), median of {args.single}"
    )
    print(
        f"ssh server process: RSS {server_before[1] / 1024:.1f} MB idle, {server_after[1] / 1024:.1f} MB with "
        f"{n} sessions ({growth_kb / 1024:.2f} MB per session, included above)"
    )
    print(f"server stopped with SIGTERM: exit {code}; the supervised run went on: {run_went_on}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--single", type=int, default=3, help="sessions timed alone, one after another")
    parser.add_argument("--size", default="120x35", help="terminal size COLSxROWS")
    parser.add_argument("--no-in-process", action="store_true", help="skip the one-process design")
    parser.add_argument("--in-process-worker", metavar="SESSION", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process_worker:
        cols, rows = (int(v) for v in args.size.split("x"))
        asyncio.run(in_process_worker(Path(args.in_process_worker), args.sessions, cols, rows))
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
