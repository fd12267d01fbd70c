"""Step ``extract-thrashing-journal``: the thrash/deadlock/recovery journal and candidate examples from traces.

Reads one or more canonical dirty traces (Stage A's output). For each file the trace analysis finds the recovery
chains, thrash runs, oscillations, deadlocks and deaths; each becomes one line of ``journal.jsonl`` with its
provenance, and a closing ``file_summary`` line keeps the traps, MTTR and context profile. A second streaming pass
buffers one episode at a time and cuts candidate examples (``examples.jsonl``, see ``pipeline.data.examples``);
the summary counts failure-recovery examples by construction (``failure_recovery_pairing``: the recovering
tick's own context, or the fallback at each failed tick's context for traces that did not record it).
Bad lines (bad JSON, torn last line, invalid UTF-8, missing fields) go to ``bad_lines.jsonl`` and the summary,
and the rest of the file is still used.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.data.examples import (
    ChainSpan,
    EpisodeTicks,
    ExampleBuilder,
    ExampleOptions,
    GoldenPolicy,
    SourceRef,
)
from pipeline.data.jsonl import BadLineLog, JsonlWriter, file_sha256
from pipeline.data.rows import LABELS, PAIRINGS, pydantic_error_text
from pipeline.data.step_io import StepParams, find_files, finish_bad_lines, load_params
from pipeline.jobs.context import StepContext
from pipeline.traces.analysis import ChainSummary, TraceAnalysis, analyze
from pipeline.traces.reader import BadLine, good_records
from pipeline.traces.schema import EpisodeEnd, EpisodeStart, Tick, parse_record

JOURNAL_NAME = "journal.jsonl"
EXAMPLES_NAME = "examples.jsonl"


class ExtractParams(StepParams):
    input: str | list[str] | None = None
    """trace files or folders of ``*.jsonl`` traces; default: the step's declared inputs"""
    golden: GoldenPolicy = "progress"
    include_attempts: bool = True


def to_jsonable(value: Any) -> Any:
    """Analysis results (dataclasses or pydantic models) as plain JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _tick_range(item: dict[str, Any]) -> tuple[int | None, int | None]:
    start = item.get("start_tick", item.get("tick"))
    end = item.get("end_tick", item.get("tick"))
    return (start if isinstance(start, int) else None, end if isinstance(end, int) else None)


def journal_entries(analysis: TraceAnalysis, source: SourceRef) -> Iterator[dict[str, Any]]:
    """One journal line per chain, thrash run, oscillation, deadlock and death, each with its provenance."""
    groups: tuple[tuple[str, Any], ...] = (
        ("chain", analysis.chains),
        ("thrash", analysis.thrash),
        ("oscillation", analysis.oscillations),
        ("deadlock", analysis.deadlocks),
        ("death", analysis.deaths),
    )
    for entry_type, items in groups:
        for item in items:
            body = to_jsonable(item)
            if not isinstance(body, dict):
                body = {"value": body}
            start, end = _tick_range(body)
            provenance = {
                "source": source.path,
                "sha256": source.sha256,
                "episode": body.get("episode"),
                "tick_start": start,
                "tick_end": end,
            }
            yield {"type": entry_type, **body, "provenance": provenance}
    yield {
        "type": "file_summary",
        "traps": to_jsonable(analysis.traps),
        "mttr_ticks": analysis.mttr_ticks,
        "mttr_seconds": analysis.mttr_seconds,
        "context": to_jsonable(analysis.context),
        "provenance": {"source": source.path, "sha256": source.sha256},
    }


def iter_episodes(path: Path, bad: BadLineLog) -> Iterator[EpisodeTicks]:
    """Episodes of one trace, each yielded when its ``episode_end`` arrives (open ones at the end of the file)."""
    open_episodes: dict[str, EpisodeTicks] = {}
    for number, obj in good_records(path, bad.add):
        try:
            record = parse_record(obj)
        except (ValueError, ValidationError) as exc:
            bad.add(BadLine(file=str(path), line=number, reason=pydantic_error_text(exc)))
            continue
        ep = open_episodes.setdefault(record.episode, EpisodeTicks(record.episode))
        if isinstance(record, Tick):
            if record.tick in ep.ticks:
                first = ep.ticks[record.tick][0]
                reason = f"duplicate tick {record.tick} of episode {record.episode!r} (first at line {first})"
                bad.add(BadLine(file=str(path), line=number, reason=reason))
                continue
            ep.ticks[record.tick] = (number, record)
        elif isinstance(record, EpisodeStart):
            ep.start = record
        elif isinstance(record, EpisodeEnd):
            ep.end = record
            yield open_episodes.pop(record.episode)
    yield from open_episodes.values()


def _chain_span(chain: ChainSummary) -> ChainSpan:
    return ChainSpan(
        chain_id=str(chain.chain_id),
        episode=str(chain.episode),
        ticks=tuple(dict.fromkeys(int(t) for t in chain.ticks)),  # a tick written twice is one tick
        outcome=str(chain.outcome),
        failure_class=chain.failure_class,
        mechanism=chain.mechanism,
    )


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def run(ctx: StepContext) -> dict[str, Any]:
    params = load_params(ctx, ExtractParams)
    traces = find_files(ctx, params.input, "*.jsonl", "trace files")
    options = ExampleOptions(golden=params.golden, include_attempts=params.include_attempts)
    bad = BadLineLog()
    entry_counts: Counter[str] = Counter()
    chain_outcomes: Counter[str] = Counter()
    failure_classes: Counter[str] = Counter()
    labels: Counter[str] = Counter({label: 0 for label in LABELS})
    skipped: Counter[str] = Counter()
    pairings: Counter[str] = Counter({pairing: 0 for pairing in PAIRINGS})
    recover_ticks: list[float] = []
    recover_seconds: list[float] = []
    files: list[dict[str, Any]] = []
    with JsonlWriter(ctx.artifact(JOURNAL_NAME)) as journal, JsonlWriter(ctx.artifact(EXAMPLES_NAME)) as out:
        for path in traces:
            ctx.emit("trace_started", file=str(path))
            # Stage C reads canonical traces only (foreign ones are imported to canonical first): the example
            # pass below reads the same records the analysis saw.
            analysis = analyze(path, fmt="phasef")
            source = SourceRef(str(path), analysis.sha256 or file_sha256(path))
            for problem in analysis.bad_lines:
                bad.add(problem)
            for entry in journal_entries(analysis, source):
                journal.write(entry)
                entry_counts[entry["type"]] += 1
            chains: dict[str, list[ChainSpan]] = {}
            for chain in analysis.chains:
                span = _chain_span(chain)
                chains.setdefault(span.episode, []).append(span)
                chain_outcomes[span.outcome] += 1
                failure_classes[span.failure_class or "unknown"] += 1
                if span.outcome == "recovered":
                    if chain.ticks_to_recover is not None:
                        recover_ticks.append(float(chain.ticks_to_recover))
                    if chain.seconds_to_recover is not None:
                        recover_seconds.append(float(chain.seconds_to_recover))
            builder = ExampleBuilder(source, options)
            episodes = 0
            file_examples = 0
            for ep in iter_episodes(path, bad):
                episodes += 1
                batch = builder.build(ep, chains.get(ep.episode, []))
                for problem in batch.problems:
                    bad.add(problem)
                skipped.update(batch.skipped)
                pairings.update(batch.pairings)
                for example in batch.examples:
                    out.write(example)
                    labels[example.label] += 1
                file_examples += len(batch.examples)
            files.append(
                {
                    "path": source.path,
                    "sha256": source.sha256,
                    "episodes": episodes,
                    "chains": len(analysis.chains),
                    "examples": file_examples,
                    "mttr_ticks": analysis.mttr_ticks,
                    "mttr_seconds": analysis.mttr_seconds,
                }
            )
            ctx.emit("trace_done", file=source.path, episodes=episodes, examples=file_examples)
    summary: dict[str, Any] = {
        "files": files,
        "journal": {"path": str(ctx.artifact(JOURNAL_NAME)), "entries": dict(entry_counts)},
        "chains": {"total": sum(chain_outcomes.values()), **dict(chain_outcomes)},
        "failure_classes": dict(failure_classes),
        "thrash": entry_counts["thrash"],
        "oscillations": entry_counts["oscillation"],
        "deadlocks": entry_counts["deadlock"],
        "deaths": entry_counts["death"],
        "mttr_ticks": _mean(recover_ticks),
        "mttr_seconds": _mean(recover_seconds),
        "examples": {"path": str(ctx.artifact(EXAMPLES_NAME)), **dict(labels)},
        "failure_recovery_pairing": dict(pairings),
        "skipped_ticks": dict(skipped),
    }
    summary.update(finish_bad_lines(ctx, bad))
    ctx.log(
        f"{len(traces)} trace(s): {summary['chains']['total']} chains, "
        f"{labels['failure_recovery']} failure-recovery / {labels['golden']} golden / {labels['reject']} reject "
        f"examples ({pairings['recovering_context']} at the recovering tick's own context, "
        f"{pairings['failure_context']} at a failed tick's context: fallback), {len(bad)} bad line(s)"
    )
    return summary
