"""Cutting candidate training examples out of one episode's ticks.

The unit of learning is a tick where an action was chosen. The example's prompt is that tick's recorded
``context`` (exactly the messages the model was sent, so training sees what evaluation will send) and its target
is an action serialized exactly as the model must emit it.

- In a recovered chain, the tick that recovered it becomes the ``failure_recovery`` example, paired with its *own*
  recorded context: the prompt is what that actor (the reflex expert, the schema-repair retry or the model itself)
  was shown in the state where it acted, the target is the action it took there (``completion``) and
  ``rejected`` is what the model emitted at the last failed tick before it. The pairing is exact: the harness
  builds a reflex tick's context with the same ``build_messages`` (same state line, same event window, same
  bounds) it would have sent the model at that tick. Pairing the recovering action with the *failed* ticks'
  contexts is wrong once several ticks failed in a row: by the time the chain recovered the situation had
  changed, and that action was not the right one at the first failure's prompt. Only a recovering tick that
  moved the task forward (``progress`` or ``success``) is imitated.
- Fallback, for traces whose recovering tick has no recorded context (imported foreign traces, hand-written
  ones): every failed model tick of the chain becomes a ``failure_recovery`` example with its own context and
  the recovering action as the target. Each example says which construction made it in
  ``provenance.pairing`` (``recovering_context`` or ``failure_context``).
- In a chain that ended in death or is still open, failed model ticks become ``reject`` examples.
- In an episode that succeeded without a single failure, its clean model ticks become ``golden`` examples
  (by default only those that made progress, so a golden episode does not flood the feed with idle steps).

Ticks that cannot yield an example (no recorded context, not the model's turn, no output at all) are counted by
reason, never silently dropped.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from pipeline.data.action_text import action_text
from pipeline.data.rows import ChatMessage, Example, Label, Pairing, Provenance, pydantic_error_text
from pipeline.traces.reader import BadLine
from pipeline.traces.schema import EpisodeEnd, EpisodeStart, Tick

GoldenPolicy = Literal["progress", "all", "none"]
FAILED_OUTCOMES = frozenset({"error", "timeout", "death"})
CLEAN_OUTCOMES = frozenset({"ok", "success"})


@dataclass(frozen=True)
class ChainSpan:
    """A recovery chain as the analysis found it: where it starts and ends in its episode, how it ended."""

    chain_id: str
    episode: str
    ticks: tuple[int, ...]
    """the failure, the attempts and the closing tick, in order"""
    outcome: str
    failure_class: str | None = None
    mechanism: str | None = None


@dataclass(frozen=True)
class SourceRef:
    path: str
    sha256: str


@dataclass
class EpisodeTicks:
    """Everything read for one episode of one file, kept until the episode ends."""

    episode: str
    start: EpisodeStart | None = None
    end: EpisodeEnd | None = None
    ticks: dict[int, tuple[int, Tick]] = field(default_factory=dict)
    """tick number -> (1-based line, tick)"""

    def task_id(self) -> str | None:
        if self.start is not None and self.start.task_id:
            return self.start.task_id
        return next((t.task_id for _, t in self.ticks.values() if t.task_id), None)

    def succeeded(self) -> bool:
        return self.end is not None and (self.end.outcome == "success" or self.end.solved)


@dataclass(frozen=True)
class ExampleOptions:
    golden: GoldenPolicy = "progress"
    """which clean ticks of a successful episode are golden: those that made progress, all, or none"""
    include_attempts: bool = True
    """fallback pairing only: every failed model tick of a recovered chain is an example, not only the first"""


@dataclass
class ExampleBatch:
    examples: list[Example] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[BadLine] = field(default_factory=list)
    """ticks whose recorded fields cannot form a valid example (named by file and line)"""
    pairings: Counter[str] = field(default_factory=Counter)
    """failure-recovery examples by construction (``recovering_context`` / ``failure_context``)"""


def _example_id(source: SourceRef, episode: str, label: str, line: int, tick_end: int) -> str:
    """Stable across runs on the same bytes; the prompt tick's line keeps a reused episode name apart."""
    key = f"{source.sha256}:{episode}:{label}:{line}:{tick_end}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


def _failed(tick: Tick) -> bool:
    return tick.outcome in FAILED_OUTCOMES or tick.schema_error is not None


def _emitted_text(tick: Tick) -> str | None:
    """What the model actually emitted: its raw output, else its parsed action."""
    if tick.raw_output is not None:
        return tick.raw_output
    return action_text(tick.action) if tick.action is not None else None


def _prompt_problem(tick: Tick) -> str | None:
    if tick.actor != "model":
        return f"not a model turn (actor {tick.actor})"
    if not tick.context:
        return "no recorded context"
    return None


def _belongs(ep: EpisodeTicks, chain: ChainSpan) -> bool:
    """The chain is this episode's: some of its ticks are here and none is marked as another chain's.

    An episode name can come back later in the same file (a new run); its chains then share the name, and the
    marks tell them apart (unmarked chains of a reused name cannot be told apart: their ticks must be there).
    """
    present = [t for t in chain.ticks if t in ep.ticks]
    return bool(present) and all(ep.ticks[t][1].chain_id in (None, chain.chain_id) for t in present)


def _recovering_tick(ep: EpisodeTicks, chain: ChainSpan) -> tuple[int, Tick] | None:
    """The chain's closing tick, when it is in the trace and did succeed."""
    if not chain.ticks or chain.ticks[-1] not in ep.ticks:
        return None
    line, tick = ep.ticks[chain.ticks[-1]]
    if _failed(tick) or tick.outcome not in CLEAN_OUTCOMES:
        return None
    return line, tick


class ExampleBuilder:
    """Turns finished episodes into candidate examples, counting every tick it could not use."""

    def __init__(self, source: SourceRef, options: ExampleOptions) -> None:
        self.source = source
        self.options = options

    def build(self, ep: EpisodeTicks, chains: list[ChainSpan]) -> ExampleBatch:
        """Examples of one episode; ``chains`` are the analysis's chains of every episode of that name."""
        batch = ExampleBatch()
        chains = [c for c in chains if _belongs(ep, c)]
        for chain in chains:
            if any(t not in ep.ticks for t in chain.ticks):
                batch.skipped["chain with ticks lost to bad lines"] += 1
                continue
            self._chain_examples(ep, chain, batch)
        if self.options.golden != "none" and ep.succeeded():
            self._golden_examples(ep, chains, batch)
        return batch

    def _add(
        self,
        batch: ExampleBatch,
        ep: EpisodeTicks,
        label: Label,
        prompt: tuple[int, Tick],
        completion: str | None,
        rejected: str | None,
        end: tuple[int, Tick] | None,
        chain: ChainSpan | None,
        pairing: Pairing | None = None,
        rejected_from: tuple[int, Tick] | None = None,
    ) -> None:
        """Add one example to ``batch`` (or a problem naming the tick when it does not validate). ``prompt`` is the
        tick whose context is the prompt, ``end`` the tick whose action is the target and ``rejected_from`` the tick
        whose output is ``rejected`` (each defaulting to the prompt tick)."""
        line, tick = prompt
        end_line, end_tick = end if end is not None else prompt
        rej_line, rej_tick = rejected_from if rejected_from is not None else prompt
        failed_tick = rej_tick if rejected_from is not None else tick
        try:
            example = Example(
                id=_example_id(self.source, ep.episode, label, line, end_tick.tick),
                label=label,
                episode=ep.episode,
                task_id=tick.task_id or ep.task_id(),
                messages=[ChatMessage.model_validate(m) for m in tick.context or []],
                completion=completion,
                rejected=rejected,
                failure_class=(chain.failure_class if chain else None) or failed_tick.error_class,
                mechanism=(chain.mechanism if chain else None) or end_tick.recovery,
                provenance=Provenance(
                    source=self.source.path,
                    sha256=self.source.sha256,
                    episode=ep.episode,
                    tick_start=min(tick.tick, rej_tick.tick),
                    tick_end=end_tick.tick,
                    lines=sorted({line, end_line, rej_line}),
                    chain_id=chain.chain_id if chain else None,
                    pairing=pairing,
                    prompt_tick=tick.tick,
                    rejected_tick=rej_tick.tick if rejected is not None else None,
                ),
            )
        except ValidationError as exc:
            reason = f"tick {tick.tick} cannot form a {label} example: {pydantic_error_text(exc)}"
            batch.problems.append(BadLine(file=self.source.path, line=line, reason=reason))
            return
        batch.examples.append(example)
        if pairing is not None:
            batch.pairings[pairing] += 1

    def _chain_examples(self, ep: EpisodeTicks, chain: ChainSpan, batch: ExampleBatch) -> None:
        failed = [ep.ticks[n] for n in chain.ticks if n in ep.ticks and _failed(ep.ticks[n][1])]
        if not failed:
            batch.skipped["chain without a failed tick in the trace"] += 1
            return
        recovering = _recovering_tick(ep, chain) if chain.outcome == "recovered" else None
        if chain.outcome == "recovered" and (recovering is None or recovering[1].action is None):
            batch.skipped["recovered chain without a recovering action"] += len(failed)
            return
        if recovering is not None and recovering[1].context:
            self._recovering_context_example(ep, chain, recovering, failed, batch)
            return
        if recovering is not None and not self.options.include_attempts:
            failed = failed[:1]
        for item in failed:
            problem = _prompt_problem(item[1])
            emitted = _emitted_text(item[1])
            if problem is None and emitted is None:
                problem = "the model emitted nothing (no raw_output, no action)"
            if problem is not None:
                batch.skipped[f"failed tick: {problem}"] += 1
                continue
            if recovering is not None and recovering[1].action is not None:
                chosen = action_text(recovering[1].action)
                self._add(batch, ep, "failure_recovery", item, chosen, emitted, recovering, chain, "failure_context")
            else:
                self._add(batch, ep, "reject", item, None, emitted, None, chain)

    def _recovering_context_example(
        self,
        ep: EpisodeTicks,
        chain: ChainSpan,
        recovering: tuple[int, Tick],
        failed: list[tuple[int, Tick]],
        batch: ExampleBatch,
    ) -> None:
        """The recovering tick's own context -> its own action; rejected: the model's last failed output before it.

        The failed ticks are not prompts here (their recovery is learnt in the state where it happened); they
        are counted, so that the summary still accounts for every failed tick of the chain.
        """
        tick = recovering[1]
        assert tick.action is not None
        batch.skipped["failed tick of a recovered chain: paired at the recovering tick's own context"] += len(failed)
        if not (tick.progress or tick.outcome == "success"):
            batch.skipped["recovered chain: the recovering tick made no progress"] += 1
            return
        before = [item for item in failed if item[1].tick < tick.tick and item[1].actor in ("model", "repair")]
        rejected_from = next((item for item in reversed(before) if _emitted_text(item[1]) is not None), None)
        if rejected_from is None:
            batch.skipped["recovered chain: no failed model output to reject"] += 1
            return
        chosen = action_text(tick.action)
        emitted = _emitted_text(rejected_from[1])
        self._add(
            batch,
            ep,
            "failure_recovery",
            recovering,
            chosen,
            emitted,
            recovering,
            chain,
            "recovering_context",
            rejected_from,
        )

    def _golden_examples(self, ep: EpisodeTicks, chains: list[ChainSpan], batch: ExampleBatch) -> None:
        clean_episode = not chains and not any(_failed(t) or t.chain_id for _, t in ep.ticks.values())
        for number in sorted(ep.ticks):
            line, tick = ep.ticks[number]
            if tick.actor != "model" or tick.error_class is not None or tick.action is None:
                continue
            if tick.outcome not in CLEAN_OUTCOMES or tick.schema_error is not None or tick.chain_id is not None:
                continue
            if self.options.golden == "progress" and not (tick.progress or tick.outcome == "success"):
                continue
            if not clean_episode:
                batch.skipped["clean tick of a successful episode that had failures"] += 1
                continue
            if not tick.context:
                batch.skipped["clean tick: no recorded context"] += 1
                continue
            self._add(batch, ep, "golden", (line, tick), action_text(tick.action), None, None, None)
