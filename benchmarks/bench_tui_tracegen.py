"""Write a synthetic canonical dirty trace of a given size, for the TUI benchmarks.

Records follow ``phasef.dirty_trace/1`` (a sample is validated with the schema before writing) and average ~430
bytes like the traces in PERFORMANCE.md. Episodes mix the situations the viewer filters on: schema errors repaired,
recovery chains that end recovered or dead, traps, deadlocks and thrashing (the same action repeated).

    python benchmarks/bench_tui_tracegen.py /tmp/trace-1g.jsonl --size-mb 1024
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from pipeline.traces.schema import parse_record

ACTIONS = ("read_file", "run_tests", "edit", "grep", "list_dir", "answer")


def _tick(rng: random.Random, run: str, ep: str, t: int, ts: float, **extra: Any) -> dict[str, Any]:
    tool = rng.choice(ACTIONS)
    rec: dict[str, Any] = {
        "schema": "phasef.dirty_trace/1",
        "kind": "tick",
        "run_id": run,
        "episode": ep,
        "ts": ts,
        "tick": t,
        "actor": "model",
        "latency_s": round(rng.lognormvariate(-0.7, 0.5), 4),
        "prompt_tokens": rng.randint(300, 1800),
        "completion_tokens": rng.randint(10, 90),
        "context_chars": rng.randint(1500, 7000),
        "raw_output": f'{{"tool": "{tool}", "args": {{"path": "src/mod_{rng.randint(0, 99)}.py"}}}}',
        "action": {"tool": tool, "args": {"path": f"src/mod_{rng.randint(0, 99)}.py"}},
        "outcome": "ok",
        "observation": "ok: " + "x" * rng.randint(20, 120),
        "progress": rng.random() < 0.6,
    }
    rec.update(extra)
    return rec


def episode_records(rng: random.Random, run: str, number: int, ts: float) -> Iterator[dict[str, Any]]:
    """One episode: a start, 20-60 ticks with failures and recoveries, an end."""
    ep = f"ep-{number:07d}"
    yield {
        "schema": "phasef.dirty_trace/1",
        "kind": "episode_start",
        "run_id": run,
        "episode": ep,
        "ts": ts,
        "task_id": f"task-{number % 50}",
        "model": "tiny-qwen3",
        "seed": number,
        "task": "fix the failing test in the repository",
        "traps": ["deadlock"] if number % 7 == 0 else [],
    }
    ticks = rng.randint(20, 60)
    dead = False
    t = 0
    chain = 0
    while t < ticks and not dead:
        ts += 0.5
        r = rng.random()
        if r < 0.06:  # a recovery chain: failure, attempts, then recovered or death
            chain += 1
            cid = f"c{chain}"
            error = rng.choice(("SchemaViolation", "Timeout", "Deadlock", "CheckFailed"))
            yield _tick(
                rng,
                run,
                ep,
                t,
                ts,
                outcome="error",
                error_class=error,
                chain_id=cid,
                chain_role="failure",
                schema_error="missing field 'tool'" if error == "SchemaViolation" else None,
                trap="deadlock" if error == "Deadlock" else None,
                action=None if error == "SchemaViolation" else {"tool": "run_tests", "args": {}},
                context=[
                    {"role": "system", "content": "You are a coding agent."},
                    {"role": "user", "content": "Observation: tests failed"},
                ],
            )
            for _ in range(rng.randint(1, 3)):
                t += 1
                ts += 0.5
                yield _tick(
                    rng,
                    run,
                    ep,
                    t,
                    ts,
                    actor="reflex",
                    chain_id=cid,
                    chain_role="attempt",
                    recovery=rng.choice(("schema_repair", "reflex", "watchdog")),
                    outcome="error",
                    error_class=error,
                )
            t += 1
            ts += 0.5
            if rng.random() < 0.15:
                dead = True
                yield _tick(
                    rng,
                    run,
                    ep,
                    t,
                    ts,
                    chain_id=cid,
                    chain_role="death",
                    outcome="death",
                    error_class="Fatal",
                    trap="fatal",
                )
            else:
                yield _tick(rng, run, ep, t, ts, chain_id=cid, chain_role="recovered", recovery="model", progress=True)
        elif r < 0.09:  # thrashing: the same action failing the same way three times
            action = {"tool": "run_tests", "args": {"path": "tests/test_io.py"}}
            for _ in range(3):
                yield _tick(
                    rng, run, ep, t, ts, action=action, outcome="error", error_class="CheckFailed", progress=False
                )
                t += 1
                ts += 0.5
            continue
        else:
            yield _tick(rng, run, ep, t, ts)
        t += 1
    yield {
        "schema": "phasef.dirty_trace/1",
        "kind": "episode_end",
        "run_id": run,
        "episode": ep,
        "ts": ts,
        "outcome": "death" if dead else rng.choice(("success", "failure")),
        "ticks": t,
        "solved": not dead and rng.random() < 0.5,
        "duration_s": round(t * 0.5, 2),
    }


def generate(path: Path, size_mb: float, seed: int = 7) -> tuple[int, int]:
    """Write about ``size_mb`` MiB of trace to ``path``; returns (records, bytes)."""
    rng = random.Random(seed)
    target = int(size_mb * (1 << 20))
    written = 0
    records = 0
    number = 0
    ts = 1_760_000_000.0
    sample_checked = False
    with open(path, "wb") as out:
        buf: list[bytes] = []
        while written < target:
            for rec in episode_records(rng, "bench", number, ts):
                if not sample_checked:
                    parse_record(rec)
                line = orjson.dumps(rec) + b"\n"
                buf.append(line)
                written += len(line)
                records += 1
            sample_checked = True
            number += 1
            ts += 100
            if len(buf) > 5000:
                out.write(b"".join(buf))
                buf.clear()
        out.write(b"".join(buf))
    return records, written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--size-mb", type=float, default=1024.0)
    args = parser.parse_args()
    started = time.perf_counter()
    records, size = generate(args.path, args.size_mb)
    elapsed = time.perf_counter() - started
    print(f"wrote {records:,} records, {size / 1e6:,.0f} MB in {elapsed:.1f} s to {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
