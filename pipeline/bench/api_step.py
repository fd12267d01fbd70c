"""Step kind ``api``: run the reference workload against an OpenAI-compatible endpoint and judge the trace.

The endpoint is a declared service (for example ``mlx_serve``: its URL and model id come from
``ctx.services``) or a user's own API (``base_url`` + ``model`` + ``api_key_env``). The dirty trace and the eval
report go to the step's artifact folder; progress reaches the engine as ``tick`` events (coalesced to at most one
per ``emit_interval_s``) and one ``episode`` event per episode. The summary returned is the report's headline.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.api_client import ChatClient
from pipeline.bench.harness import TickCallback
from pipeline.bench.params import ApiStepParams
from pipeline.bench.prompt import PromptSettings
from pipeline.bench.target import TargetError
from pipeline.bench.workload import RunResult, run_workload
from pipeline.fsio import atomic_write_text
from pipeline.jobs.context import StepContext, StepFailed, parse_params
from pipeline.report.eval_report import EvalReport, Gate, build_report, write_report
from pipeline.traces.schema import EpisodeEnd

SANDBOX_DIR = "sandboxes"
SHARD_RECORD = "shard.json"


def shard_of_env() -> tuple[int, int] | None:
    """``(i, n)`` when started as shard i of n by the shards executor (``PHASEF_SHARD``, ``PHASEF_SHARDS``)."""
    index, count = os.environ.get("PHASEF_SHARD"), os.environ.get("PHASEF_SHARDS")
    if index is None or count is None:
        return None
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise StepFailed(f"PHASEF_SHARD={index!r} PHASEF_SHARDS={count!r}: not shard numbers") from None
    if not 0 <= i < n:
        raise StepFailed(f"PHASEF_SHARD={i} is not below PHASEF_SHARDS={n}")
    return i, n


def write_shard_record(out_dir: Path, result: RunResult, model: dict[str, Any], api_key_env: str | None) -> None:
    record = {
        "run_id": result.run_id,
        "task_set_hash": result.task_set_hash,
        "packages": result.packages,
        "model": model,
        "api_key_env": api_key_env,
        "duration_s": result.duration_s,
        "aborted": result.aborted,
        "episodes": result.episodes,
    }
    atomic_write_text(out_dir / SHARD_RECORD, json.dumps(record, indent=2))


def resolve_gate(params: ApiStepParams) -> Gate:
    """The gate with its defaults filled in from the prompt settings (so that its hash means what it checks)."""
    settings = PromptSettings.of(params)
    budget = params.gate.context_budget_chars or settings.max_chars()
    if budget is None:
        # an unbounded prompt has no natural budget: judge it by the bounded defaults' budget
        budget = PromptSettings.of(params.model_copy(update={"unbounded_context": False})).max_chars()
    assert budget is not None
    warmup = params.gate.context_warmup_ticks
    return Gate(
        min_ticks=params.gate.min_ticks,
        context_budget_chars=budget,
        max_context_growth_per_tick=params.gate.max_context_growth_per_tick,
        context_warmup_ticks=warmup if warmup is not None else params.window + 1,
        require_evidence=params.gate.require_evidence,
    )


def workload_settings(params: ApiStepParams) -> dict[str, Any]:
    """The workload part of the config, as the report records it (camelCase like the rest of the report)."""
    return {
        "seed": params.seed,
        "episodes": params.episodes,
        "maxTicks": params.max_ticks,
        "traps": list(params.traps),
        "maxTokens": params.max_tokens,
        "temperature": params.temperature,
        "prompt": {
            "window": None if params.unbounded_context else params.window,
            "lastChars": None if params.unbounded_context else params.last_chars,
            "historyChars": None if params.unbounded_context else params.history_chars,
            "taskChars": None if params.unbounded_context else params.task_chars,
        },
        "recovery": {
            "schemaRepair": params.repair,
            "reflexAfter": params.reflex_after,
            "watchdog": params.watchdog,
            "deathAfter": params.death_after,
        },
        "checkTimeoutS": params.check_timeout_s,
        "lockTimeoutS": params.lock_timeout_s,
        "bombChars": params.bomb_chars,
    }


class _Progress:
    """Turns the tick stream into engine events at a bounded rate."""

    def __init__(self, ctx: StepContext, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval
        self.last = 0.0
        self.ticks = 0
        self.pending = 0
        self.deaths = 0
        self.failures = 0

    def tick(self, record: dict[str, Any]) -> None:
        self.ticks += 1
        self.pending += 1
        self.failures += record.get("outcome") in ("error", "timeout", "death")
        self.deaths += record.get("outcome") == "death"
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.ctx.emit(
                "tick",
                episode=record.get("episode"),
                tick=record.get("tick"),
                actor=record.get("actor"),
                outcome=record.get("outcome"),
                error_class=record.get("error_class"),
                latency_s=record.get("latency_s"),
                context_chars=record.get("context_chars"),
                ticks=self.ticks,
                since_last=self.pending,
                failures=self.failures,
                deaths=self.deaths,
            )
            self.pending = 0

    def episode(self, end: EpisodeEnd) -> None:
        self.ctx.emit(
            "episode", episode=end.episode, outcome=end.outcome, ticks=end.ticks, solved=end.solved, reason=end.reason
        )


@dataclass(frozen=True)
class Endpoint:
    """The OpenAI-compatible endpoint a run talks to; ``label`` names its model in the report."""

    base_url: str
    model: str
    api_key_env: str | None
    label: str


def _endpoint(ctx: StepContext, params: ApiStepParams) -> Endpoint:
    """The endpoint the step talks to: the params' own API, or one of the step's services."""
    if params.base_url:
        assert params.model is not None
        return Endpoint(params.base_url, params.model, params.api_key_env, params.model)
    if params.service:
        info = ctx.services.get(params.service)
        if info is None:
            raise StepFailed(f"params.service: {params.service!r} is not among this step's services")
    elif len(ctx.services) == 1:
        info = next(iter(ctx.services.values()))
    else:
        named = ", ".join(sorted(ctx.services)) or "none"
        raise StepFailed(f"params.service: name the service to evaluate (step services: {named}), or set base_url")
    if not info.url or not info.model:
        raise StepFailed(f"service {info.name} gave no url/model to talk to")
    label = f"{info.name}:{getattr(info, 'model_path', None) or info.model}"
    return Endpoint(info.url, params.model or info.model, params.api_key_env, label)


async def evaluate(
    params: ApiStepParams,
    endpoint: Endpoint,
    *,
    out_dir: Path,
    run_id: str | None = None,
    on_tick: TickCallback | None = None,
    on_episode: Callable[[EpisodeEnd], None] | None = None,
    shard: tuple[int, int] | None = None,
) -> tuple[RunResult, EvalReport]:
    """Run the workload, then write and return its report (usable without an engine)."""
    trace_path = out_dir / params.trace
    api_key_env = endpoint.api_key_env
    async with ChatClient(
        endpoint.base_url,
        endpoint.model,
        api_key_env=api_key_env,
        timeout=params.request_timeout,
        retries=params.retries,
        backoff=params.backoff,
        backoff_max=params.backoff_max,
    ) as client:
        result = await run_workload(
            params,
            client,
            trace_path,
            out_dir / SANDBOX_DIR,
            model_label=endpoint.label,
            run_id=run_id,
            on_tick=on_tick,
            on_episode=on_episode,
            shard=shard,
        )
    model_info = {"id": endpoint.model, "label": endpoint.label, "baseUrl": endpoint.base_url}
    if shard is not None:  # what the merge of the shards needs to judge the whole run
        write_shard_record(out_dir, result, model_info, api_key_env)
    report = build_report(
        trace_path,
        run_id=result.run_id,
        gate=resolve_gate(params),
        task_set_hash=result.task_set_hash,
        model=model_info,
        target=result.packages,
        workload=workload_settings(params),
        api_key_env=api_key_env,
        duration_s=result.duration_s,
        aborted=result.aborted,
    )
    write_report(report, out_dir / params.report)
    return result, report


def summary(report: EvalReport, result: RunResult, out_dir: Path, params: ApiStepParams) -> dict[str, Any]:
    return {
        "verdict": report.verdict,
        "reasons": report.reasons,
        "ticksObserved": report.ticks_observed,
        "episodes": report.episodes,
        "solved": report.solved,
        "deaths": report.deaths,
        "recovered": report.recoveries.recovered,
        "chains": report.recoveries.chains,
        "trapInteractions": report.trap_interactions.total,
        "schemaViolationRate": report.schema_violation_rate,
        "latencyP50": report.latency.p50,
        "latencyP95": report.latency.p95,
        "mttrTicks": report.mttr.ticks,
        "mttrSeconds": report.mttr.seconds,
        "contextMaxChars": report.context_profile.max_chars,
        "contextGrowthPerTick": report.context_profile.growth_per_tick,
        "taskSetHash": report.task_set_hash,
        "gateConfigHash": report.gate_config_hash,
        "durationS": round(result.duration_s, 3),
        "trace": str(out_dir / params.trace),
        "report": str(out_dir / params.report),
    }


def run(ctx: StepContext) -> dict[str, Any]:
    """The ``api`` step function."""
    params = parse_params(ApiStepParams, ctx.params)
    endpoint = _endpoint(ctx, params)
    out_dir = ctx.artifacts_dir
    ctx.log(f"evaluating {endpoint.label} at {endpoint.base_url}: {params.episodes} episodes, seed {params.seed}")
    run_id = f"{ctx.session_id}-{ctx.stage}-{ctx.step}-{ctx.attempt}"
    progress = _Progress(ctx, params.emit_interval_s)
    shard = shard_of_env()
    if shard is not None:
        ctx.log(f"shard {shard[0]} of {shard[1]}: episodes whose index is {shard[0]} modulo {shard[1]}")
    try:
        result, report = asyncio.run(
            evaluate(
                params,
                endpoint,
                out_dir=out_dir,
                run_id=run_id,
                on_tick=progress.tick,
                on_episode=progress.episode,
                shard=shard,
            )
        )
    except TargetError as exc:
        raise StepFailed(f"params.packages: {exc}") from None
    ctx.log(
        f"{report.verdict}: {report.ticks_observed} ticks, {report.deaths} deaths, "
        f"{report.recoveries.recovered} recoveries" + (f"; {'; '.join(report.reasons)}" if report.reasons else "")
    )
    return summary(report, result, out_dir, params)
