"""What a ``[hosts.NAME]`` machine offers: platform, CPU (Apple Silicon or not), free disk in its workdir, python
and mlx/mlx_lm versions, found over SSH with the host's own python (``phasef hosts check``); and whether the hosts
a step spreads its ranks over can reach each other as MLX's ring needs (each listens on its own address, the
others connect to it)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shlex
from typing import Any

import asyncssh
import orjson

from pipeline.config import HostConfig, PhasefConfig
from pipeline.jobs.executor import ExecutorError
from pipeline.jobs.ssh import connect, describe, remote_word, run

PROBE = r"""
import json, os, platform, shutil, subprocess, sys
from importlib import metadata
work = sys.argv[1]
info = {"platform": platform.platform(), "system": platform.system(), "machine": platform.machine(),
        "python": platform.python_version(), "executable": sys.executable, "workdir": work}
cpu = platform.processor() or ""
try:
    if info["system"] == "Darwin":
        cpu = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True).stdout
    elif os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1]
                break
except OSError:
    pass
info["cpu"] = cpu.strip()
info["cpus"] = os.cpu_count()
info["apple_silicon"] = info["system"] == "Darwin" and info["machine"] == "arm64"
info["workdir_writable"] = os.access(work, os.W_OK)
info["free_disk_bytes"] = shutil.disk_usage(work).free
for name in ("mlx", "mlx-lm"):
    try:
        info[name.replace("-", "_")] = metadata.version(name)
    except metadata.PackageNotFoundError:
        info[name.replace("-", "_")] = None
print(json.dumps(info))
"""


def _notes(info: dict[str, Any]) -> list[str]:
    notes = []
    if not info.get("apple_silicon"):
        notes.append("not Apple Silicon: MLX steps (training, serving) cannot run here")
    elif not info.get("mlx"):
        notes.append("mlx is not installed for this python")
    if info.get("apple_silicon") and not info.get("mlx_lm"):
        notes.append("mlx_lm is not installed for this python")
    return notes


async def check_host(name: str, host: HostConfig) -> dict[str, Any]:
    """One host's report: ``usable`` (connected, its python runs, its workdir is writable), what it offers, and
    the reason when it is not usable."""
    report: dict[str, Any] = {"name": name, "address": f"{host.address}:{host.port}", "usable": False}
    try:
        conn = await connect(host, name, retries=0)
    except ExecutorError as exc:
        report["error"] = str(exc)
        return report
    try:
        work = remote_word(host.workdir)
        out = await run(
            conn,
            f'mkdir -p {work} && cd {work} && {remote_word(host.python)} -c {shlex.quote(PROBE)} "$(pwd)"',
            timeout=host.connect_timeout + 30,
        )
        info = orjson.loads(out.strip().splitlines()[-1])
    except (ExecutorError, OSError, TimeoutError, ValueError, IndexError) as exc:
        report["error"] = f"{describe(host, name)}: python {host.python} or workdir {host.workdir} unusable: {exc}"
        return report
    finally:
        conn.close()
    report.update(info)
    report["notes"] = _notes(info)
    report["usable"] = bool(info.get("workdir_writable"))
    if not report["usable"]:
        report["error"] = f"{describe(host, name)}: workdir {info.get('workdir')} is not writable"
    return report


async def check_hosts(hosts: dict[str, HostConfig]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(check_host(n, h) for n, h in hosts.items())))


RING_LISTEN = r"""
import socket, sys
s = socket.socket()
try:
    s.bind((sys.argv[1], 0))
except OSError as exc:
    print("bind", exc, flush=True)
    sys.exit(0)
s.listen(8)
print("port", s.getsockname()[1], flush=True)
s.settimeout(float(sys.argv[2]))
try:
    s.accept()[0].close()
    print("accepted", flush=True)
except OSError as exc:
    print("none", exc, flush=True)
"""

RING_DIAL = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("ok")
except OSError as exc:
    print("error", exc)
"""

RING_TIMEOUT_S = 10.0


def ring_pairs(cfg: PhasefConfig, every: bool = False) -> list[tuple[str, str]]:
    """(listener, dialer) host pairs that must reach each other: both ways between any two hosts a step spreads
    ranks over (every pair of declared hosts with ``every``)."""
    groups = (
        [list(cfg.hosts)]
        if every
        else [list(dict.fromkeys(s.hosts)) for _, _, s in cfg.iter_steps() if s.ranks > 1 and len(set(s.hosts)) > 1]
    )
    pairs: dict[tuple[str, str], None] = {}
    for group in groups:
        for a, b in itertools.permutations(group, 2):
            pairs[(a, b)] = None
    return list(pairs)


async def _ring_pair(hosts: dict[str, HostConfig], listener: str, dialer: str) -> dict[str, Any]:
    """Host ``listener`` binds a port on its own address; host ``dialer`` connects to it there."""
    lh, dh = hosts[listener], hosts[dialer]
    pair: dict[str, Any] = {"listener": listener, "dialer": dialer, "address": lh.address, "ok": False}
    async with contextlib.AsyncExitStack() as stack:
        try:
            lconn, dconn = [
                stack.enter_context(contextlib.closing(await connect(hosts[name], name, retries=0)))
                for name in (listener, dialer)
            ]
        except ExecutorError as exc:
            pair["error"] = f"not checked: {exc}"
            return pair
        try:
            listen = (
                f"{remote_word(lh.python)} -c {shlex.quote(RING_LISTEN)} {shlex.quote(lh.address)} {RING_TIMEOUT_S}"
            )
            proc = await lconn.create_process("/bin/sh -c " + shlex.quote(listen))
            first = str(await asyncio.wait_for(proc.stdout.readline(), lh.connect_timeout + 30)).split(maxsplit=1)
            if not first or first[0] != "port":
                said = first[1].strip() if len(first) > 1 else "no answer"
                pair["error"] = f"{describe(lh, listener)} cannot listen on its address {lh.address}: {said}"
                return pair
            port = pair["port"] = int(first[1])
            dial = f"{remote_word(dh.python)} -c {shlex.quote(RING_DIAL)} {shlex.quote(lh.address)} {port} 5"
            said = (await run(dconn, dial, timeout=dh.connect_timeout + 30)).strip()
        except (ExecutorError, OSError, TimeoutError, ValueError, asyncssh.Error) as exc:
            pair["error"] = f"{describe(lh, listener)}: ring check failed: {exc}"
            return pair
    if said != "ok":
        pair["error"] = (
            f"host {dialer} cannot reach {lh.address}:{port} on host {listener}: {said.removeprefix('error ')}"
        )
        return pair
    pair["ok"] = True
    return pair


async def check_ring(hosts: dict[str, HostConfig], pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(_ring_pair(hosts, a, b) for a, b in pairs)))
