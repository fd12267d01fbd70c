"""What a ``[hosts.NAME]`` machine offers: platform, CPU (Apple Silicon or not), free disk in its workdir, python
and mlx/mlx_lm versions, found over SSH with the host's own python (``phasef hosts check``)."""

from __future__ import annotations

import asyncio
import shlex
from typing import Any

import orjson

from pipeline.config import HostConfig
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
