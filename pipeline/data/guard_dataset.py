"""Step ``guard-sft-dataset``: only clean, unique, scrubbed rows that fit the model go on to training.

For every candidate example, in this order:

1. secrets and PII are scrubbed from every string (counted by kind), so nothing after this point, rejects
   included, ever holds them;
2. the row is validated against the ``Example`` schema (a failure names the field and the line);
3. a ``completion`` must be an action the evaluation harness accepts (its own ``parse_action``), or with
   ``harness_actions = false`` (foreign traces) at least a JSON object;
4. duplicates by normalized content hash (Unicode NFC, whitespace collapsed) are dropped, the first one kept;
5. the row is rendered with the target model's chat template and counted in its tokens; a row longer than
   ``max_tokens`` would be truncated by the trainer, losing the very action it teaches, so it is rejected.

Kept rows go to ``dataset.jsonl``; every rejected row goes to ``rejects.jsonl`` with its reason.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError
from pydantic import Field, ValidationError

from pipeline.bench.prompt import ActionError, parse_action
from pipeline.data.jsonl import BadLineLog, JsonlWriter
from pipeline.data.rows import LABELS, Example, pydantic_error_text
from pipeline.data.scrub import SECRET_KINDS, scrub_value
from pipeline.data.step_io import StepParams, find_files, finish_bad_lines, load_params
from pipeline.data.token_length import ChatTokenCounter, TokenizerUnavailable
from pipeline.jobs.context import StepContext, StepFailed
from pipeline.traces.reader import BadLine, iter_records

DATASET_NAME = "dataset.jsonl"
REJECTS_NAME = "rejects.jsonl"
INPUT_NAME = "examples.jsonl"
UNSCRUBBED_FIELDS = frozenset({"id", "provenance"})
"""Fields written by this program (hashes, paths, ids), not by the environment: never scrubbed."""


class GuardParams(StepParams):
    input: str | list[str] | None = None
    """the candidate examples (``examples.jsonl`` or its folder); default: the step's declared inputs"""
    tokenizer: str = Field(description="the target model's folder (tokenizer.json, tokenizer_config.json)")
    max_tokens: int = Field(default=2048, gt=0, description="longest row allowed, in target tokens")
    harness_actions: bool = Field(
        default=True, description="a completion must parse as the reference harness's action (else: any JSON object)"
    )


def normalize_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_hash(example: Example) -> str:
    """Hash of what the model would learn from the row; provenance and ids do not make a row different."""
    parts = {
        "messages": [[m.role, normalize_text(m.content)] for m in example.messages],
        "completion": normalize_text(example.completion) if example.completion is not None else None,
        "rejected": normalize_text(example.rejected) if example.rejected is not None else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def completion_problem(example: Example, harness_action: bool) -> str | None:
    """Why the completion is not an action the harness would accept (None when it is)."""
    if example.completion is None:
        return None
    if harness_action:
        try:
            parse_action(example.completion)
        except ActionError as exc:
            return f"field 'completion': the harness rejects it: {exc}"
        return None
    try:
        action = json.loads(example.completion)
    except ValueError as exc:
        return f"field 'completion': not JSON: {exc}"
    if not isinstance(action, dict):
        return f"field 'completion': expected a JSON object (an action), got {type(action).__name__}"
    return None


def row_tokens(example: Example, counter: ChatTokenCounter) -> int:
    """The longest way the row is rendered: with its completion and, for pairs, with its rejected output."""
    prompt = example.prompt_messages()
    answers = [text for text in (example.completion, example.rejected) if text is not None]
    return max(counter.count([*prompt, {"role": "assistant", "content": text}]) for text in answers)


class Guard:
    """Applies the guard to rows one at a time, remembering hashes of what it kept."""

    def __init__(self, counter: ChatTokenCounter, max_tokens: int, harness_actions: bool) -> None:
        self.counter = counter
        self.max_tokens = max_tokens
        self.harness_actions = harness_actions
        self.seen: dict[str, str] = {}
        self.scrubbed: Counter[str] = Counter()
        self.rows_scrubbed = 0
        self.rejected: Counter[str] = Counter()
        self.tokens: list[int] = []

    def check(self, file: str, line: int, raw: dict[str, Any]) -> tuple[Example | None, dict[str, Any]]:
        """Return the kept example (or None) and the scrubbed row (for the rejects file)."""
        found: Counter[str] = Counter()
        row = {k: (v if k in UNSCRUBBED_FIELDS else scrub_value(v, found)) for k, v in raw.items()}
        if found:
            self.rows_scrubbed += 1
            self.scrubbed.update(found)
        try:
            example = Example.model_validate(row)
        except ValidationError as exc:
            return self._reject("schema", pydantic_error_text(exc), row)
        problem = completion_problem(example, self.harness_actions)
        if problem is not None:
            return self._reject("bad_completion", problem, row)
        digest = content_hash(example)
        if digest in self.seen:
            return self._reject("duplicate", f"same content as row {self.seen[digest]}", row)
        try:
            tokens = row_tokens(example, self.counter)
        except TemplateError as exc:
            return self._reject("template", f"the chat template refused the row: {exc}", row)
        if tokens > self.max_tokens:
            return self._reject("too_long", f"{tokens} tokens > max_tokens {self.max_tokens}", row)
        self.seen[digest] = f"{example.id} ({Path(file).name}:{line})"
        self.tokens.append(tokens)
        return example.model_copy(update={"tokens": tokens}), row

    def _reject(self, code: str, reason: str, row: dict[str, Any]) -> tuple[None, dict[str, Any]]:
        self.rejected[code] += 1
        row["_reject"] = {"code": code, "reason": reason}
        return None, row


def _token_stats(tokens: list[int]) -> dict[str, Any]:
    if not tokens:
        return {"max": None, "mean": None, "p95": None}
    ordered = sorted(tokens)
    return {
        "max": ordered[-1],
        "mean": round(statistics.fmean(ordered), 1),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    }


def run(ctx: StepContext) -> dict[str, Any]:
    params = load_params(ctx, GuardParams)
    inputs = find_files(ctx, params.input, INPUT_NAME, "candidate examples")
    try:
        counter = ChatTokenCounter(ctx.resolve(params.tokenizer))
    except TokenizerUnavailable as exc:
        raise StepFailed(f"guard-sft-dataset: target tokenizer: {exc}") from exc
    guard = Guard(counter, params.max_tokens, params.harness_actions)
    bad = BadLineLog()
    kept: Counter[str] = Counter({label: 0 for label in LABELS})
    rows_in = 0
    with JsonlWriter(ctx.artifact(DATASET_NAME)) as dataset, JsonlWriter(ctx.artifact(REJECTS_NAME)) as rejects:
        for path in inputs:
            for item in iter_records(path):
                if isinstance(item, BadLine):
                    bad.add(item)
                    guard.rejected["unreadable"] += 1
                    continue
                rows_in += 1
                line, raw = item
                example, row = guard.check(str(path), line, raw)
                if example is None:
                    reject = row.pop("_reject")
                    rejects.write({**reject, "file": str(path), "line": line, "row": row})
                    if reject["code"] == "schema":
                        bad.add(BadLine(file=str(path), line=line, reason=reject["reason"]))
                    continue
                dataset.write(example)
                kept[example.label] += 1
    summary: dict[str, Any] = {
        "inputs": [str(p) for p in inputs],
        "rows_in": rows_in,
        "kept": sum(kept.values()),
        "kept_by_label": dict(kept),
        "rejected": sum(guard.rejected.values()),
        "rejected_by_reason": dict(guard.rejected),
        "scrubbed": {kind: guard.scrubbed[kind] for kind in SECRET_KINDS},
        "rows_scrubbed": guard.rows_scrubbed,
        "tokenizer": counter.source,
        "max_tokens": params.max_tokens,
        "tokens": _token_stats(guard.tokens),
        "dataset": str(ctx.artifact(DATASET_NAME)),
        "rejects": str(ctx.artifact(REJECTS_NAME)),
    }
    summary.update(finish_bad_lines(ctx, bad))
    ctx.log(
        f"guard: {rows_in} rows in, {summary['kept']} kept, {summary['rejected']} rejected "
        f"{dict(guard.rejected)}, {guard.rows_scrubbed} row(s) scrubbed"
    )
    return summary
