"""Remote-step overhead on loopback: the same steps run locally and on a real asyncssh host on 127.0.0.1.

    python benchmarks/bench_remote.py [--steps 10] [--mb 16]

Per step: a plan of N ``true`` shell steps in one pool slot, run locally, then with ``host`` (connect, folders,
env file, detached start, status polling, log copy); the difference per step is the remote overhead. Per MB synced:
one step whose declared input is a file of ``--mb`` MB, first upload (changed) against the second run (unchanged:
only the sha256 on the host is computed), and an output of the same size coming back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import parse_config
from pipeline.engine import Engine
from tests.remote_helpers import loopback_host


def run_plan(plan: str, project: Path, session: str) -> float:
    engine = Engine(parse_config(plan), session_dir=project / "sessions" / session, project_dir=project)
    t0 = time.perf_counter()
    try:
        result = asyncio.run(engine.run())
    finally:
        engine.journal.close()
    if result.exit_code != 0:
        raise SystemExit(f"run failed: {result.error}")
    return time.perf_counter() - t0


def steps_plan(n: int, host: str | None) -> str:
    text = '[pools]\ndefault = 1\n[stages.A]\ntitle = "A"\nsequential = true\n'
    for i in range(n):
        text += f'[stages.A.steps.s{i}]\nkind = "shell"\ncommand = "true"\ncache = false\n'
        if host:
            text += f'host = "{host}"\n'
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--mb", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, loopback_host(Path(d) / "host") as host:
        root = Path(d)
        local = run_plan(steps_plan(args.steps, None), root / "p", "local")
        remote = run_plan(host.hosts_toml() + steps_plan(args.steps, "box"), root / "p", "remote")
        print(
            f"{args.steps} no-op steps: local {local / args.steps * 1000:.0f} ms/step, "
            f"remote (loopback SSH) {remote / args.steps * 1000:.0f} ms/step, "
            f"overhead {(remote - local) / args.steps * 1000:.0f} ms/step"
        )
        session = root / "p" / "sessions" / "sync"
        session.mkdir(parents=True)
        (session / "big.bin").write_bytes(os.urandom(args.mb << 20))
        plan = host.hosts_toml() + (
            '[stages.A]\ntitle = "A"\n[stages.A.steps.copy]\nkind = "shell"\nhost = "box"\ncache = false\n'
            'inputs = ["big.bin"]\noutputs = ["out.bin"]\ncommand = "cp big.bin out.bin"\n'
        )
        first = run_plan(plan, root / "p", "sync")
        second = run_plan(plan, root / "p", "sync")
        per_step = remote / args.steps
        up_and_down = first - per_step
        print(
            f"{args.mb} MB input changed + {args.mb} MB output: {first:.2f} s "
            f"({up_and_down / (2 * args.mb) * 1000:.1f} ms per MB synced, past the step overhead)"
        )
        print(f"{args.mb} MB input unchanged (sha256 on the host only) + {args.mb} MB output: {second:.2f} s")


if __name__ == "__main__":
    main()
