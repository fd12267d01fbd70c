"""Data-parallel LoRA on loopback: one rank against two ranks of the same mlx_train step, and the all-reduce cost.

    python benchmarks/bench_ranks.py [--iters 30] [--batch 4] [--reps 50]

Both runs go through the engine (the ranks executor, MLX's ring backend on 127.0.0.1) on the tiny Qwen3 model with
the same global batch size, so two ranks each compute half a batch. tokens/s is the trainer's own figure (the tokens
of all ranks over the training time, median of the reports after the first, which includes compilation); step time
is the attempt's training wall time over its steps (validation at the first and last step included). The
all-reduce time is measured apart, in two ranks on the same ring: ``mlx.nn.average_gradients`` (what mlx_lm's
trainer calls once per optimizer update) on a gradient tree of the very shapes the LoRA recipe trains, evaluated,
timed call by call over ``--reps`` calls after a warm-up (mean and median: a loaded machine adds outliers).

On a machine with few cores the two ranks share them, so expect little or no gain from the second rank here; the
figure that carries over to two Macs is the all-reduce time against the step time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run_plan(plan: str, project: Path, session: str) -> dict[str, Any]:
    from pipeline.config import parse_config
    from pipeline.engine import Engine
    from tests.spine_helpers import journal_events

    session_dir = project / "sessions" / session
    engine = Engine(parse_config(plan), session_dir=session_dir, project_dir=project)
    try:
        result = asyncio.run(engine.run())
    finally:
        engine.journal.close()
    if result.exit_code != 0:
        raise SystemExit(f"run failed: {result.error}")
    done = [e for e in journal_events(session_dir) if e["type"] == "step_succeeded"]
    summary: dict[str, Any] = done[0]["payload"]["summary"]
    return summary


def train_plan(model: Path, data: Path, ranks: int, iters: int, batch: int) -> str:
    return (
        f'[stages.D]\ntitle = "D"\n[stages.D.steps.ft]\nkind = "mlx_train"\nranks = {ranks}\ntimeout = 600\n'
        f'[stages.D.steps.ft.params]\nmodel = "{model}"\ndata = "{data}"\niters = {iters}\nbatch_size = {batch}\n'
        f"save_every = {iters}\nsteps_per_report = 5\nsteps_per_eval = 100000\nval_batches = 1\ntest_batches = 0\n"
        "max_seq_length = 128\n"
    )


def allreduce_worker(model: str, reps: int) -> None:
    """One rank of the all-reduce timing (started twice by ``measure_allreduce``)."""
    import mlx.core as mx
    from mlx.nn import average_gradients
    from mlx.utils import tree_flatten, tree_map

    from pipeline.train.mlx_model import load_trainable_model, parameter_count
    from pipeline.train.params import TrainParams

    group = mx.distributed.init(backend="ring", strict=True)
    net, _, _ = load_trainable_model(model, TrainParams.model_validate({"model": model, "data": "."}))
    grads = tree_map(lambda p: mx.random.normal(p.shape).astype(p.dtype), net.trainable_parameters())
    mx.eval(grads)
    for _ in range(5):
        mx.eval(average_gradients(grads))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        mx.eval(average_gradients(grads))
        times.append(time.perf_counter() - t0)
    per_call, median = sum(times) / reps, sorted(times)[reps // 2]
    if group.rank() == 0:
        nbytes = sum(int(v.nbytes) for _, v in tree_flatten(grads))
        found = {"seconds": per_call, "median": median, "params": parameter_count(grads), "bytes": nbytes}
        print(json.dumps(found), flush=True)


def measure_allreduce(model: Path, reps: int, workdir: Path) -> dict[str, Any]:
    from pipeline.services import free_ports

    hostfile = workdir / "hostfile.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{port}"] for port in free_ports(2)]))
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--allreduce-worker", str(model), "--reps", str(reps)],
            env={**os.environ, "MLX_RANK": str(rank), "MLX_HOSTFILE": str(hostfile)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"all-reduce ranks failed: exit {[p.returncode for p in procs]}")
    found: dict[str, Any] = json.loads(outs[0].strip().splitlines()[-1])
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--allreduce-worker", metavar="MODEL")
    args = ap.parse_args()
    if args.allreduce_worker:
        allreduce_worker(args.allreduce_worker, args.reps)
        return
    from tests.test_train_runner import make_chat_data, make_tiny_model

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        model = make_tiny_model(root / "tiny-qwen3")
        data = make_chat_data(root / "data", n_train=64, n_valid=8, n_test=8)
        rows = []
        for ranks in (1, 2):
            s = run_plan(train_plan(model, data, ranks, args.iters, args.batch), root / "p", f"r{ranks}")
            step_ms = s["train_wall_s"] / s["steps_this_attempt"] * 1000
            rows.append((ranks, s["tokens_per_s"], step_ms))
            print(
                f"ranks = {ranks}: {s['tokens_per_s']:.0f} tokens/s (all ranks), {step_ms:.1f} ms/step "
                f"over {s['steps_this_attempt']} steps of global batch {args.batch}, wall {s['wall_s']:.1f} s"
            )
        (_, tps1, _), (_, tps2, step2) = rows
        print(f"two ranks vs one: {tps2 / tps1:.2f}x tokens/s")
        ar = measure_allreduce(model, args.reps, root)
        ms, med = ar["seconds"] * 1000, ar["median"] * 1000
        print(
            f"all-reduce per step (average_gradients over the LoRA gradients, {ar['params']} params, "
            f"{ar['bytes'] / 1024:.0f} KiB, 2 ranks on loopback, {args.reps} calls): mean {ms:.2f} ms, "
            f"median {med:.2f} ms = {ms / step2 * 100:.1f}% of a two-rank step (mean)"
        )


if __name__ == "__main__":
    main()
