"""The agent harness's own overhead per tick, next to the model's latency, measured in one run.

    python benchmarks/bench_harness.py [--episodes 14] [--seed 0]

Creates the tiny model, serves it with mlx_lm.server on loopback and runs the reference workload. Each tick record
carries the model call's latency (``latency_s``, the HTTP request that answered), the sandbox action's time
(``env_s``: real file reads, searches, check subprocesses, trap timeouts) and the tick's time up to its record
(``tick_s``). The harness's own overhead inside a tick is ``tick_s - latency_s - env_s`` (prompt building,
parsing, chain bookkeeping, the client's JSON work); outside the ticks it spends time laying out each episode's
sandbox (``RunResult.sandbox_s``) and writing records. The baseline in the same run is the model alone: the same
prompts replayed straight through the client, one call after another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.api_client import ChatClient
from pipeline.bench.api_step import Endpoint, evaluate
from pipeline.bench.environment import EnvSettings, Sandbox
from pipeline.bench.params import ApiStepParams
from pipeline.bench.target import load_target
from pipeline.bench.tasks import Task
from pipeline.bench.trace_writer import TraceWriter
from pipeline.models.tiny import init_tiny
from pipeline.report.eval_report import percentile
from pipeline.serve import MlxServe
from pipeline.traces.schema import Tick


def _ms(values: list[float], q: float) -> str:
    value = percentile(values, q)
    return "   n/a" if value is None else f"{value * 1000:6.2f}"


async def replay(url: str, model: str, prompts: list[list[dict[str, str]]], max_tokens: int) -> list[float]:
    """The baseline: the model's latency for the same prompts with nothing else around it."""
    latencies = []
    async with ChatClient(url, model) as client:
        for messages in prompts:
            result = await client.complete(messages, max_tokens=max_tokens)
            latencies.append(result.latency_s)
    return latencies


def sandbox_cost(root: Path, tasks: list[Task]) -> float:
    """Time to lay out and remove the sandboxes of the same tasks (copy of the sources, checks, traps)."""
    tree = load_target()
    t0 = time.perf_counter()
    for index, task in enumerate(tasks):
        box = Sandbox(root / f"ep-{index:03d}", tree, task, EnvSettings())
        box.open()
        box.close()
    return time.perf_counter() - t0


def write_cost(path: Path, ticks: list[dict[str, Any]]) -> float:
    """Time to build, serialize, write and flush the same tick records again."""
    models = [{k: v for k, v in t.items() if k != "schema"} for t in ticks]
    t0 = time.perf_counter()
    with TraceWriter(path) as writer:
        for data in models:
            writer.write(Tick(**data))
    return time.perf_counter() - t0


async def bench(episodes: int, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        init_tiny(root / "tiny", seed=seed)
        service = MlxServe("tiny", {"model": "tiny"}, root, root, root / "serve.log")
        info = await service.start(timeout=120)
        assert info.url and info.model
        try:
            params = ApiStepParams(episodes=episodes, seed=seed)
            t0 = time.perf_counter()
            result, report = await evaluate(params, Endpoint(info.url, info.model, None, "tiny"), out_dir=root)
            wall = time.perf_counter() - t0
            records = [json.loads(line) for line in (root / params.trace).read_text().splitlines()]
            ticks = [r for r in records if r["kind"] == "tick"]
            prompts = [t["context"] for t in ticks if t.get("latency_s") is not None]
            baseline = await replay(info.url, info.model, prompts, params.max_tokens)
        finally:
            await service.stop()
        setup_s = sandbox_cost(root / "again", result.tasks)
        write_s = write_cost(root / "rewrite.jsonl", ticks)
    model_s = [float(t["latency_s"]) for t in ticks if t.get("latency_s") is not None]
    env_s = [float(t["env_s"]) for t in ticks]
    overhead = [float(t["tick_s"]) - float(t.get("latency_s") or 0.0) - float(t["env_s"]) for t in ticks]
    run_s = result.duration_s  # the workload alone (the report is built after it)
    unaccounted = run_s - sum(float(t["tick_s"]) for t in ticks)
    per_tick_total = (run_s - sum(model_s) - sum(env_s)) / len(ticks)
    rows: list[tuple[str, list[float]]] = [
        ("model latency, in the harness", model_s),
        ("model latency, replayed alone (baseline)", baseline),
        ("sandbox action (env_s, incl. traps)", env_s),
        ("harness overhead per tick", overhead),
    ]
    print(
        f"{len(ticks)} ticks, {report.episodes} episodes, {len(model_s)} model calls; workload {run_s:.2f} s, "
        f"with target loading and the report {wall:.2f} s "
        f"({report.verdict})"
    )
    print(f"{'':44s} {'p50 ms':>7s} {'p95 ms':>7s} {'mean ms':>8s}")
    for name, values in rows:
        mean = statistics.mean(values) * 1000 if values else float("nan")
        print(f"{name:44s} {_ms(values, 50)}  {_ms(values, 95)}  {mean:7.2f}")
    print(f"outside ticks (episode setup and teardown, records), per tick: {unaccounted / len(ticks) * 1000:.2f} ms")
    print(
        f"  of which sandbox open+close, per episode: {result.sandbox_s / len(result.tasks) * 1000:.2f} ms "
        f"({result.sandbox_s / len(ticks) * 1000:.2f} ms per tick; re-measured alone: "
        f"{setup_s / len(result.tasks) * 1000:.2f} ms per episode)"
    )
    print(f"  of which trace record build+write+flush, per tick: {write_s / len(ticks) * 1000:.3f} ms")
    print(f"all harness time per tick (workload - model - sandbox actions) / ticks: {per_tick_total * 1000:.2f} ms")
    p50_model = percentile(model_s, 50) or float("nan")
    print(
        f"harness overhead / model latency (p50): {(percentile(overhead, 50) or 0) / p50_model:.3f} ; "
        f"in-harness / replayed model latency (p50): {p50_model / (percentile(baseline, 50) or float('nan')):.2f}"
    )
    detail: dict[str, Any] = {"taskSetHash": result.task_set_hash, "durationS": round(result.duration_s, 2)}
    print(json.dumps(detail))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    asyncio.run(bench(args.episodes, args.seed))


if __name__ == "__main__":
    main()
