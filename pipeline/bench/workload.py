"""A whole workload: the tasks generated from the target, one ``EpisodeRunner`` a task, each in its own sandbox, all
written to one dirty trace (``run_workload``); stops early when the model endpoint stays unreachable."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.api_client import ChatClient
from pipeline.bench.environment import EnvSettings, Sandbox
from pipeline.bench.harness import EpisodeRunner, RunAborted, RunShared, TickCallback
from pipeline.bench.params import ApiStepParams
from pipeline.bench.target import TargetTree, load_target
from pipeline.bench.tasks import Task, generate_tasks, task_set_hash
from pipeline.bench.trace_writer import TraceWriter
from pipeline.traces.schema import EpisodeEnd


@dataclass
class RunResult:
    run_id: str
    trace_path: Path
    tasks: list[Task]
    task_set_hash: str
    ticks: int = 0
    episodes: int = 0
    duration_s: float = 0.0
    sandbox_s: float = 0.0
    """time spent laying out and removing the episodes' sandboxes (part of ``duration_s``)"""
    aborted: str | None = None
    packages: dict[str, str] = field(default_factory=dict)


async def run_workload(
    params: ApiStepParams,
    client: ChatClient,
    trace_path: Path,
    sandbox_root: Path,
    *,
    model_label: str,
    run_id: str | None = None,
    tree: TargetTree | None = None,
    on_tick: TickCallback | None = None,
    on_episode: Callable[[EpisodeEnd], None] | None = None,
    shard: tuple[int, int] | None = None,
) -> RunResult:
    """Run every episode of the workload against ``client``, writing the dirty trace to ``trace_path``; with
    ``shard = (i, n)`` only the episodes whose index is i modulo n (their ids unchanged)."""
    tree = tree or load_target(params.packages)
    tasks = generate_tasks(tree, params.seed, params.episodes, params.traps, params.bomb_chars)
    result = RunResult(
        run_id=run_id or uuid.uuid4().hex[:12],
        trace_path=trace_path,
        tasks=tasks,
        task_set_hash=task_set_hash(tasks),
        packages=dict(tree.versions),
    )
    env_settings = EnvSettings(
        check_timeout_s=params.check_timeout_s, lock_timeout_s=params.lock_timeout_s, bomb_chars=params.bomb_chars
    )
    started = time.perf_counter()
    with TraceWriter(trace_path) as writer:
        shared = RunShared(params, client, writer, result.run_id, model_label, on_tick)
        for index, task in enumerate(tasks):
            if shard is not None and index % shard[1] != shard[0]:
                continue
            episode = f"ep-{index:03d}"
            sandbox = Sandbox(sandbox_root / episode, tree, task, env_settings)
            s0 = time.perf_counter()
            sandbox.open()
            result.sandbox_s += time.perf_counter() - s0
            runner = EpisodeRunner(shared, episode, task, sandbox)
            try:
                end = await runner.run()
            except RunAborted as exc:
                result.aborted = str(exc)
                result.episodes += 1
                break
            finally:
                s0 = time.perf_counter()
                sandbox.close(keep=params.keep_sandboxes)
                result.sandbox_s += time.perf_counter() - s0
            result.episodes += 1
            if on_episode is not None:
                on_episode(end)
        result.ticks = writer.ticks
    if sandbox_root.is_dir() and not any(sandbox_root.iterdir()):
        sandbox_root.rmdir()
    result.duration_s = time.perf_counter() - started
    return result
