"""The tick-based agent harness: episodes of model turns against the sandbox, with recovery, written as a dirty trace.

Each tick one actor acts: the model (a chat completion whose reply must be a JSON action), the schema-repair retry
(the model again, shown its invalid reply and the validation error), the reflex policy (a scripted expert that takes
over after ``reflex_after`` failed model turns and keeps control until something succeeds) or the watchdog (which
breaks a deadlock). A failed tick opens a recovery chain (``failure``), further failed ticks extend it (``attempt``)
and the first successful tick closes it (``recovered``, with the mechanism that acted); an episode that dies ends
its chain with ``death``. A chain that reaches ``death_after`` failed ticks kills the episode too (stalled).

Every tick's record is written and flushed before the next tick starts. The model's prompt is the bounded one of
``pipeline.bench.prompt``; the reflex's ticks record that same prompt, so that a training example can pair what
the model saw with what the expert did.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.api_client import ChatError, ChatResult
from pipeline.bench.environment import EnvSettings, Sandbox, StepResult
from pipeline.bench.params import ApiStepParams
from pipeline.bench.prompt import (
    Action,
    ActionError,
    PromptEvent,
    PromptSettings,
    PromptState,
    build_messages,
    build_repair_messages,
    messages_chars,
    parse_action,
    render_action,
)
from pipeline.bench.reflex import Observed, reflex_action
from pipeline.bench.target import TargetTree, load_target
from pipeline.bench.tasks import Task, generate_tasks, task_set_hash
from pipeline.bench.trace_writer import TraceWriter
from pipeline.traces.schema import (
    Actor,
    ChainRole,
    EpisodeEnd,
    EpisodeOutcome,
    EpisodeStart,
    Outcome,
    Source,
    Tick,
)

REFLEX_OBSERVATION_CHARS = 4000
THRASH_REPEATS = 3
_PROGRESS_ERRORS = frozenset({"CheckFailed", "ContextOverflow"})
_RECOVERY_OF: dict[str, str] = {"repair": "schema_repair", "reflex": "reflex", "watchdog": "watchdog"}


class ChatBackend(Protocol):
    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ChatResult: ...


TickCallback = Callable[[dict[str, Any]], None]


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


def prompt_settings(params: ApiStepParams) -> PromptSettings:
    if params.unbounded_context:
        return PromptSettings.unbounded()
    return PromptSettings(
        window=params.window,
        last_chars=params.last_chars,
        history_chars=params.history_chars,
        task_chars=params.task_chars,
    )


def _extra(**fields: Any) -> dict[str, Any]:
    """Fields beyond the canonical schema (allowed there: consumers keep what they do not know)."""
    return fields


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


@dataclass
class _Pending:
    messages: list[dict[str, str]]
    bad_output: str
    error: str


@dataclass
class _Turn:
    """What one actor did in one tick."""

    messages: list[dict[str, str]] | None = None
    chat: ChatResult | None = None
    chat_error: ChatError | None = None
    action: Action | None = None
    schema_error: str | None = None
    result: StepResult = field(default_factory=lambda: StepResult("error", "no action", "ToolError"))
    env_s: float = 0.0


@dataclass
class _RunState:
    """What episodes share: consecutive model calls that could not reach the endpoint."""

    connection_errors: int = 0


class _RunAborted(Exception):
    pass


class EpisodeRunner:
    """Runs one episode: owns its sandbox, its chain bookkeeping and its part of the trace."""

    def __init__(
        self,
        *,
        episode: str,
        task: Task,
        sandbox: Sandbox,
        params: ApiStepParams,
        client: ChatBackend,
        writer: TraceWriter,
        run_id: str,
        model_label: str,
        on_tick: TickCallback | None,
        run_state: _RunState,
    ) -> None:
        self.episode = episode
        self.task = task
        self.sandbox = sandbox
        self.params = params
        self.client = client
        self.writer = writer
        self.run_id = run_id
        self.model_label = model_label
        self.on_tick = on_tick
        self.settings = prompt_settings(params)
        self.run_state = run_state
        # episode state
        self.events: list[PromptEvent] = []
        self.seen: list[Observed] = []
        self.failures = 0
        self.streak = 0
        self.model_failed_turns = 0
        self.pending: _Pending | None = None
        self.reflex_active = False
        self.watchdog_due = False
        self.chain_id: str | None = None
        self.chain_ticks = 0
        self.chains = 0
        self.action_keys: set[tuple[str, str]] = set()
        self.last_key: tuple[str, str] | None = None
        self.repeats = 0
        self.death_reason: str | None = None

    def _actor(self) -> Actor:
        if self.watchdog_due:
            return "watchdog"
        if self.pending is not None:
            return "repair"
        if self.reflex_active:
            return "reflex"
        return "model"

    async def _call_model(
        self, messages: list[dict[str, str]], tick: int
    ) -> tuple[ChatResult | None, ChatError | None]:
        try:
            result = await self.client.complete(
                messages,
                max_tokens=self.params.max_tokens,
                temperature=self.params.temperature,
                seed=self.params.seed * 100_003 + tick,
            )
        except ChatError as exc:
            return None, exc
        return result, None

    async def run(self) -> EpisodeEnd:
        started = time.time()
        self.writer.write(
            EpisodeStart(
                run_id=self.run_id,
                episode=self.episode,
                task_id=self.task.id,
                ts=started,
                model=self.model_label,
                seed=self.params.seed,
                task=self.task.statement,
                traps=list(self.task.traps),
                source=Source(format="phasef.bench"),
                **_extra(
                    task_kind=self.task.kind,
                    context_window=None if self.params.unbounded_context else self.params.window,
                    context_budget_chars=self.settings.max_chars(),
                ),
            )
        )
        outcome: EpisodeOutcome = "timeout"
        reason = f"no answer within {self.params.max_ticks} ticks"
        tick = 0
        for tick in range(self.params.max_ticks):
            record = await self._tick(tick)
            if record.outcome == "success":
                outcome, reason = "success", "answered correctly"
                break
            if record.outcome == "death":
                outcome = "death"
                reason = self.death_reason or str(record.error_class)
                break
            if self.run_state.connection_errors >= self.params.max_connection_errors:
                outcome = "aborted"
                reason = f"model endpoint unreachable: {self.run_state.connection_errors} consecutive connection errors"
                break
        end = EpisodeEnd(
            run_id=self.run_id,
            episode=self.episode,
            task_id=self.task.id,
            ts=time.time(),
            outcome=outcome,
            ticks=tick + 1,
            solved=outcome == "success",
            reason=reason,
            duration_s=round(time.time() - started, 4),
            **_extra(open_chain=None if outcome == "death" else self.chain_id),
        )
        self.writer.write(end)
        if outcome == "aborted":
            raise _RunAborted(reason)
        return end

    async def _turn(self, actor: Actor, tick: int) -> _Turn:
        """Let ``actor`` act once: get its action (a model call for the model and the repair) and execute it."""
        turn = _Turn()
        if actor == "watchdog":
            e0 = time.perf_counter()
            turn.result = self.sandbox.break_deadlock()
            turn.env_s = time.perf_counter() - e0
            return turn
        if actor == "repair":
            assert self.pending is not None
            turn.messages = build_repair_messages(
                self.pending.messages, self.pending.bad_output, self.pending.error, self.settings
            )
        else:
            state = PromptState(tick, self.failures, self.streak, self.sandbox.checks_run)
            turn.messages = build_messages(self.task.statement, state, self.events, self.settings)
        if actor == "reflex":
            turn.action = reflex_action(self.task, self.seen)
        else:
            turn.chat, turn.chat_error = await self._call_model(turn.messages, tick)
            if turn.chat is not None:
                try:
                    turn.action = parse_action(turn.chat.text)
                except ActionError as exc:
                    turn.schema_error = str(exc)
        if turn.action is not None:
            e0 = time.perf_counter()
            turn.result = self.sandbox.step(turn.action)
            turn.env_s = time.perf_counter() - e0
        elif turn.schema_error is not None:
            turn.result = StepResult("error", f"invalid action: {turn.schema_error}", "SchemaViolation")
        elif turn.chat_error is not None:
            err = turn.chat_error
            outcome: Outcome = "timeout" if err.error_class == "Timeout" else "error"
            turn.result = StepResult(outcome, f"model call failed: {err}", err.error_class)
        return turn

    async def _tick(self, tick: int) -> Tick:
        t0 = time.perf_counter()
        actor = self._actor()
        turn = await self._turn(actor, tick)
        messages, chat, chat_error, action = turn.messages, turn.chat, turn.chat_error, turn.action
        schema_error, result, env_s = turn.schema_error, turn.result, turn.env_s
        if chat_error is not None and chat_error.error_class == "ConnectionError":
            self.run_state.connection_errors += 1
        elif actor in ("model", "repair"):
            self.run_state.connection_errors = 0
        key = (action.act, action.arg.strip()) if action is not None else None
        self.repeats = self.repeats + 1 if key is not None and key == self.last_key else int(key is not None)
        progress = (
            key is not None
            and key not in self.action_keys
            and (not result.failed or result.error_class in _PROGRESS_ERRORS)
        ) or (actor == "watchdog" and result.trap == "deadlock")
        self.last_key = key
        if key is not None:
            self.action_keys.add(key)
        chain_id, role, outcome, death_reason, recovery = self._chain(actor, result)
        self.death_reason = death_reason
        extras: dict[str, Any] = {
            "attempts": chat.attempts if chat is not None else chat_error.attempts if chat_error else None,
            "observation_chars": len(result.observation),
            "thrash": self.repeats >= THRASH_REPEATS,
            "death_reason": death_reason,
            "env_s": round(env_s, 6),
            "tick_s": round(time.perf_counter() - t0, 6),
        }
        record = Tick(
            run_id=self.run_id,
            episode=self.episode,
            task_id=self.task.id,
            ts=time.time(),
            tick=tick,
            actor=actor,
            latency_s=round(chat.latency_s, 6) if chat is not None else None,
            prompt_tokens=chat.prompt_tokens if chat is not None else None,
            completion_tokens=chat.completion_tokens if chat is not None else None,
            context_chars=messages_chars(messages) if messages is not None else 0,
            context=messages,
            raw_output=chat.text if chat is not None else None,
            action=action.model_dump() if action is not None else None,
            schema_error=schema_error,
            outcome=outcome,
            error_class=result.error_class,
            observation=_cut(result.observation, self.params.trace_observation_chars),
            trap=result.trap,
            chain_id=chain_id,
            chain_role=role,
            recovery=recovery,
            progress=progress,
            **extras,
        )
        self._control(actor, messages, chat, schema_error, result)
        self._remember(actor, action, schema_error, result)
        data = self.writer.write(record)
        if self.on_tick is not None:
            self.on_tick(data)
        return record

    def _chain(
        self, actor: Actor, result: StepResult
    ) -> tuple[str | None, ChainRole | None, Outcome, str | None, str | None]:
        """Mark the tick's place in a recovery chain: (chain id, role, outcome, death reason, mechanism)."""
        recovery = _RECOVERY_OF.get(actor)
        if result.failed:
            self.failures += 1
            self.streak += 1
            role: ChainRole = "attempt"
            if self.chain_id is None:
                self.chains += 1
                self.chain_id = f"{self.episode}-c{self.chains}"
                self.chain_ticks = 0
                role = "failure"
            self.chain_ticks += 1
            if result.outcome == "death":
                return self.chain_id, "death", "death", result.death_reason, recovery
            if self.chain_ticks >= self.params.death_after:
                reason = f"stalled: {self.chain_ticks} failed ticks in one chain (last: {result.error_class})"
                return self.chain_id, "death", "death", reason, recovery
            return self.chain_id, role, result.outcome, None, recovery
        self.streak = 0
        if self.chain_id is None:
            return None, None, result.outcome, None, recovery
        chain_id, self.chain_id, self.chain_ticks = self.chain_id, None, 0
        self.reflex_active = False
        self.model_failed_turns = 0
        return chain_id, "recovered", result.outcome, None, recovery or "model"

    def _control(
        self,
        actor: Actor,
        messages: list[dict[str, str]] | None,
        chat: ChatResult | None,
        schema_error: str | None,
        result: StepResult,
    ) -> None:
        """Who acts next: a repair retry after an invalid action, the reflex after repeated failure, the
        watchdog after a deadlock."""
        failed = result.failed
        if actor == "model":
            if schema_error is not None and self.params.repair and messages is not None and chat is not None:
                self.pending = _Pending(messages, chat.text, schema_error)
            elif failed:
                self.model_failed_turns += 1
        elif actor == "repair":
            self.pending = None
            if failed:
                self.model_failed_turns += 1
        elif actor == "watchdog":
            self.watchdog_due = False
        if failed and self.model_failed_turns >= self.params.reflex_after:
            self.reflex_active = True
        if result.error_class == "Deadlock" and self.params.watchdog:
            self.watchdog_due = True

    def _remember(self, actor: Actor, action: Action | None, schema_error: str | None, result: StepResult) -> None:
        """What later prompts show and what the reflex knows."""
        if actor == "watchdog":
            shown = "(watchdog)"
        elif action is not None:
            shown = render_action(action)
        elif schema_error is not None:
            shown = "(invalid output)"
        else:
            shown = "(no reply)"
        self.events.append(PromptEvent(shown, result.error_class or result.outcome, result.observation))
        if self.settings.window is not None and len(self.events) > 4 * self.settings.window:
            del self.events[: -self.settings.window]
        if action is not None:
            observed = result.observation[:REFLEX_OBSERVATION_CHARS]
            self.seen.append(Observed(action, result.outcome, result.error_class, observed))


async def run_workload(
    params: ApiStepParams,
    client: ChatBackend,
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
    run_state = _RunState()
    started = time.perf_counter()
    with TraceWriter(trace_path) as writer:
        for index, task in enumerate(tasks):
            if shard is not None and index % shard[1] != shard[0]:
                continue
            episode = f"ep-{index:03d}"
            sandbox = Sandbox(sandbox_root / episode, tree, task, env_settings)
            s0 = time.perf_counter()
            sandbox.open()
            result.sandbox_s += time.perf_counter() - s0
            runner = EpisodeRunner(
                episode=episode,
                task=task,
                sandbox=sandbox,
                params=params,
                client=client,
                writer=writer,
                run_id=result.run_id,
                model_label=model_label,
                on_tick=on_tick,
                run_state=run_state,
            )
            try:
                end = await runner.run()
            except _RunAborted as exc:
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
