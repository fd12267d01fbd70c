"""Tokens/s of the ``mlx_train`` job next to a bare ``python -m mlx_lm lora`` run on the same data, same session.

    python benchmarks/bench_train_overhead.py [--iters 200] [--repeats 2] [--rows 64]

Both runs train the project's tiny Qwen3 model (``pipeline.models.tiny``) with the same recipe: the bare run reads
it as the YAML config the handoff package writes (``pipeline.train.lora_config``), the job as its step params, and
the job runs in its own process through ``pipeline.jobs.run_function`` exactly as the engine starts it (events,
checkpoints with optimizer state, the batch feeder, the stop handler). Throughput is the median of the trainer's
own tokens/s reports after the first one (the first includes graph compilation); the job's figures come from its
``train`` events, the bare run's from mlx_lm's printed table. Runs alternate job/bare to spread machine noise.
The ratio job/bare is the wrapper's overhead (1.00 = none).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.jobs.context import EVENT_PREFIX, StepContext
from pipeline.models.tiny import init_tiny
from pipeline.train.lora_config import lora_config, to_yaml
from pipeline.train.params import TrainRecipe

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("read", "write", "run", "grep")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BARE_REPORT = re.compile(r"^\s*(\d+)\s+([\d.]+)\s+[▼▲]\s+([\d,]+)\s+([\d.]+)k\s*$")


def write_data(folder: Path, rows: int) -> None:
    rng = random.Random(7)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", rows), ("valid", max(8, rows // 8))):
        lines = []
        for _ in range(n):
            i = rng.randrange(1000)
            action = {"tool": TOOLS[i % 4], "path": f"src/mod{i % 5}.py"}
            messages = [
                {"role": "system", "content": "answer with one JSON action"},
                {"role": "user", "content": f"task {i}: the check in src/mod{i % 5}.py fails"},
                {"role": "assistant", "content": json.dumps(action)},
            ]
            lines.append(json.dumps({"messages": messages}))
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def steady(rates: list[float]) -> float:
    return statistics.median(rates[1:] or rates)


def run_job(work: Path, model: Path, data: Path, recipe: TrainRecipe, n: int) -> tuple[float, float]:
    session = work / f"job{n}"
    params = {"model": str(model), "data": str(data), **recipe.model_dump(mode="json", exclude_none=True)}
    ctx = StepContext(
        session_id="bench",
        session_dir=session,
        project_dir=ROOT,
        stage="D",
        step="train",
        kind="mlx_train",
        attempt=1,
        artifacts_dir=session / "artifacts",
        params=params,
    )
    ctx_path = session / "train.1.ctx.json"
    session.mkdir(parents=True)
    ctx_path.write_text(ctx.model_dump_json())
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.jobs.run_function", str(ctx_path), "pipeline.train.runner:run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"training job failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    rates = []
    for line in out.stdout.splitlines():
        if line.startswith(EVENT_PREFIX):
            event: dict[str, Any] = json.loads(line[len(EVENT_PREFIX) :])
            if event["event"] == "train" and event.get("tokens_per_s"):
                rates.append(float(event["tokens_per_s"]))
    return steady(rates), wall


def run_bare(work: Path, model: Path, data: Path, recipe: TrainRecipe, n: int) -> tuple[float, float]:
    config = work / f"bare{n}.yaml"
    values = lora_config(recipe, model=str(model), data=str(data), adapter_path=str(work / f"bare{n}"), test=False)
    config.write_text(to_yaml(values))
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "mlx_lm", "lora", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"mlx_lm lora failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    rates = []
    for line in ANSI.sub("", out.stdout).splitlines():
        match = BARE_REPORT.match(line)
        if match:
            rates.append(float(match.group(3).replace(",", "")))
    if not rates:
        raise SystemExit("no tokens/s reports found in the mlx_lm lora output")
    return steady(rates), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rows", type=int, default=64)
    args = parser.parse_args()
    recipe = TrainRecipe(
        iters=args.iters,
        batch_size=4,
        learning_rate=1e-3,
        steps_per_report=10,
        steps_per_eval=args.iters,
        save_every=100,
        val_batches=2,
        test_batches=0,
        max_seq_length=256,
    )
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        model = work / "tiny-qwen3"
        init_tiny(model, seed=0)
        data = work / "data"
        write_data(data, args.rows)
        job: list[tuple[float, float]] = []
        bare: list[tuple[float, float]] = []
        for n in range(args.repeats):
            job.append(run_job(work, model, data, recipe, n))
            bare.append(run_bare(work, model, data, recipe, n))
    print(f"tiny qwen3 (hidden 64, 2 blocks), LoRA on all blocks, {args.iters} steps x batch 4, {args.rows} rows")
    print(f"{'run':<28}{'tokens/s (median)':>20}{'wall s':>10}")
    for n in range(args.repeats):
        print(f"{f'mlx_train job #{n + 1}':<28}{job[n][0]:>20.0f}{job[n][1]:>10.1f}")
        print(f"{f'bare mlx_lm lora #{n + 1}':<28}{bare[n][0]:>20.0f}{bare[n][1]:>10.1f}")
    job_rate = statistics.median(r for r, _ in job)
    bare_rate = statistics.median(r for r, _ in bare)
    job_wall = statistics.median(w for _, w in job)
    bare_wall = statistics.median(w for _, w in bare)
    print(f"job / bare tokens/s : {job_rate / bare_rate:.3f}  (1.00 = no overhead; < 1 = the job is slower)")
    print(f"job / bare wall time: {job_wall / bare_wall:.3f}  (includes start-up, checkpoints, events)")


if __name__ == "__main__":
    main()
