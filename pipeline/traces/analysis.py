"""What went wrong in a dirty trace, and how the agent got out of it: one streaming pass over the records.

Findings, per episode:

* **Recovery chains** — a failure, the attempts after it, and how it ended: ``recovered``, ``death`` (the episode
  died with the chain open) or ``open``. Canonical traces mark chains on the ticks (``chain_id``/``chain_role``)
  and those marks are used as written. Foreign traces carry no marks, so chains are derived: a failing tick opens a
  chain keyed by its action *verb* (see ``action_verb``); later failures of the same verb are attempts; the chain
  is recovered by the first later tick where the same verb succeeds. A different action succeeding is not
  evidence that the failure was overcome (in tau-bench the agent answers the user between five identical failing
  calls), the same action succeeding is. A failure without any parsable action (a schema violation) is recovered
  by the first successful tick of any action.
* **Thrashing** — the same verb failing with the same error class ``thrash_min`` times or more before that verb
  succeeds again (other actions may come in between). Verbs ignore arguments on purpose: retries with nudged
  arguments (SWE-agent edits with a shifted line range) are what thrashing looks like in the wild.
* **Oscillation** — A/B/A/B: two different exact actions (verb and arguments) alternating for four ticks or more.
  Exact actions here, not verbs: reading a file and then editing it, over and over, is normal work.
* **Deadlock** — ``deadlock_window`` ticks in a row without progress, or the same precondition error (same verb,
  error class and message, for classes that describe the world rather than the agent's output) ``thrash_min``
  times without that verb succeeding in between.
* **Deaths** — episodes that ended in ``death`` (or had a tick whose outcome or chain role is ``death``), with
  the ticks that led there; **traps** touched; **error classes**; **MTTR** in ticks and seconds.
* **Context profile** — context size per tick number and an O(1)-bound check (``ContextProfile``).

Ideas taken from OpenHands' stuck detector (repeated action/error, alternating pairs, comparisons that ignore
volatile ids) and SWE-agent's exit statuses (an episode's end has a reason taxonomy; budget and context
exhaustion end an episode differently from a wrong answer), reworked for a streaming pass over canonical records.

Memory is bounded by the per-episode state of episodes still open and by the findings themselves, never by the
size of the file: records are decoded one line at a time and dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Unpack

import orjson

# The analysis API lives in several modules; its public names are all importable from here, as they always were.
from pipeline.traces.analyzer import AnalyzerOptions, TraceAnalyzer
from pipeline.traces.chains import (
    ChainStore,
    ChainSummary,
    ContextProfile,
    Deadlock,
    DeathTrace,
    Oscillation,
    ThrashEvent,
    TraceAnalysis,
)
from pipeline.traces.reader import (
    DEFAULT_MAX_LINE_BYTES,
    BadLine,
    Digest,
    _decode_problem,
    _iter_line_batches,
    _Tail,
    file_sha256,
)
from pipeline.traces.records import TraceRecord, decode_fallback, decode_fast_errors, fast_decoder, valid_utf8
from pipeline.traces.schema import CHAIN_ROLES, RECORD_KINDS, SCHEMA_VERSION, TICK_OUTCOMES, record_problem
from pipeline.traces.verbs import (
    CODE_TOOLS,
    DEATH_OUTCOMES,
    DEFAULT_DEADLOCK_WINDOW,
    DEFAULT_THRASH_MIN,
    FAILING_TICK_OUTCOMES,
    INVALID_VERB,
    LABEL_CHARS,
    OSCILLATION_MIN,
    PRECONDITION_CLASSES,
    SHELL_TOOLS,
    action_verb,
)

__all__ = [
    "CHAIN_ROLES",
    "CODE_TOOLS",
    "DEATH_OUTCOMES",
    "DEFAULT_DEADLOCK_WINDOW",
    "DEFAULT_THRASH_MIN",
    "FAILING_TICK_OUTCOMES",
    "INVALID_VERB",
    "LABEL_CHARS",
    "OSCILLATION_MIN",
    "PRECONDITION_CLASSES",
    "SCHEMA_VERSION",
    "SHELL_TOOLS",
    "TICK_OUTCOMES",
    "ChainStore",
    "ChainSummary",
    "ContextProfile",
    "Deadlock",
    "DeathTrace",
    "Oscillation",
    "ThrashEvent",
    "TraceAnalysis",
    "TraceAnalyzer",
    "action_verb",
    "analyze",
    "analyze_compact",
    "analyze_records",
    "record_problem",
]


RECORD_RUN = 4096  # records fed to the analyzer at once by ``analyze_records``


def analyze_records(
    records: Iterable[dict[str, Any]],
    *,
    file: str = "<memory>",
    sha256: str = "",
    bad_lines: Iterable[BadLine] = (),
    **options: Unpack[AnalyzerOptions],
) -> TraceAnalysis:
    """Analyze canonical record dicts (for example from an importer). A record's line is its ``source.line``
    when it has one, else its 1-based position in ``records``; ``bad_lines`` found earlier are carried along."""
    analyzer = TraceAnalyzer(file, **options)
    _feed_records(analyzer, records, bad_lines)
    return analyzer.finish(sha256)


def _feed_records(analyzer: TraceAnalyzer, records: Iterable[dict[str, Any]], bad_lines: Iterable[BadLine]) -> None:
    """Feed ``records`` in runs of consecutive line numbers (``TraceAnalyzer.feed_many``: one loop per run, not a
    call of the record loop per record)."""
    file = analyzer.file
    for bad_line in bad_lines:
        analyzer.bad(bad_line)
    run: list[dict[str, Any] | TraceRecord] = []
    first = 0  # the line before the run
    feed_many = analyzer.feed_many
    for position, obj in enumerate(records, 1):
        if not isinstance(obj, dict):
            if run:
                feed_many(first, run)
                run = []
            analyzer.bad(BadLine(file=file, line=position, reason=f"expected an object, got {type(obj).__name__}"))
            continue
        source = obj.get("source")
        line = source.get("line") if isinstance(source, dict) else None
        if type(line) is not int:
            if isinstance(line, int):  # a bool or an int subclass: fed as it is, alone
                if run:
                    feed_many(first, run)
                    run = []
                analyzer.feed(line, obj)
                continue
            line = position
        if run and (line != first + len(run) + 1 or len(run) >= RECORD_RUN):
            feed_many(first, run)
            run = []
        if not run:
            first = line - 1
        run.append(obj)
    if run:
        feed_many(first, run)


def _stream(path: Path, analyzer: TraceAnalyzer, max_line_bytes: int, *, fast: bool = True) -> str:
    """Read ``path`` in batches of lines, decode each line into a ``TraceRecord`` and feed it; returns the sha256.

    Bad lines get the reasons ``reader.iter_records`` gives; blank lines are skipped silently. ``fast``: batches
    go through ``TraceAnalyzer.feed_lines``; ``fast=False`` decodes here and feeds record by record (the same loop
    of the analyzer, a record at a time), the path the batch one is tested against.
    """
    digest = hashlib.sha256()
    _feed_range(path, analyzer, max_line_bytes, digest, fast=fast)
    return digest.hexdigest()


def _feed_range(
    path: Path,
    analyzer: TraceAnalyzer,
    max_line_bytes: int,
    digest: Digest | None,
    *,
    fast: bool = True,
    start: int = 0,
    end: int | None = None,
    line_no: int = 0,
) -> int:
    """``_stream`` over the bytes ``start`` to ``end`` (``start`` at the beginning of a line, ``line_no`` the
    lines before it): returns the number of the last line read (that of a torn tail included)."""
    file = str(path)
    feed = analyzer.feed
    bad = analyzer.bad
    decode = fast_decoder.decode
    errors = decode_fast_errors
    kinds = RECORD_KINDS
    feed_lines = analyzer.feed_lines
    base = line_no
    last = line_no

    def slow(line_no: int, raw: bytes) -> None:
        _feed_slow(analyzer, file, line_no, raw, torn=False)

    for item in _iter_line_batches(path, max_line_bytes, digest, start, end):
        if isinstance(item, BadLine):
            last = base + (item.line or 0)
            bad(replace(item, line=last) if base else item)
            continue
        if isinstance(item, _Tail):
            last = base + item.line
            if item.data.strip():
                _feed_slow(analyzer, file, last, item.data, torn=True)
            continue
        line_no, lines = item
        line_no += base
        last = line_no + len(lines)
        if not valid_utf8(b"\n".join(lines)):
            for raw in lines:
                line_no += 1
                _feed_slow(analyzer, file, line_no, raw, torn=False)
            continue
        if fast:
            feed_lines(line_no, lines, slow)
            continue
        for raw in lines:
            line_no += 1
            try:
                rec = decode(raw)
            except errors:
                _feed_slow(analyzer, file, line_no, raw, torn=False)
                continue
            kind = rec.kind
            if type(kind) is str and kind in kinds:
                feed(line_no, rec)
            else:  # a bad record: orjson's view of the line names the fault exactly
                _feed_slow(analyzer, file, line_no, raw, torn=False)
    return last


def _feed_slow(analyzer: TraceAnalyzer, file: str, line_no: int, raw: bytes, *, torn: bool) -> None:
    """A line the fast decoder did not take: decode it exactly and feed it, or report why it is bad."""
    value = decode_fallback(raw)
    if type(value) is TraceRecord:
        analyzer.feed(line_no, value)
    elif isinstance(value, orjson.JSONDecodeError):
        if torn:
            reason = f"torn last line (no newline at end of file): {_decode_problem(raw, value)}"
            analyzer.bad(BadLine(file=file, line=line_no, reason=reason))
        elif raw.strip():
            analyzer.bad(BadLine(file=file, line=line_no, reason=_decode_problem(raw, value)))
    else:
        reason = f"expected a JSON object, got {type(value).__name__}"
        analyzer.bad(BadLine(file=file, line=line_no, reason=reason))


class AnalyzeOptions(AnalyzerOptions, total=False):
    """The keywords of ``analyze``: those of ``analyze_compact``."""

    fmt: str | None
    max_line_bytes: int


def analyze(path: Path, **options: Unpack[AnalyzeOptions]) -> TraceAnalysis:
    """Analyze a canonical trace (streamed) or any file an importer understands (format detected unless given).

    Raises ``OSError`` when the file cannot be read at all and ``importers.UnknownFormat`` when it is a document
    of no known format.
    """
    analysis, chains = analyze_compact(path, **options)
    analysis.chains = list(chains)
    return analysis


def analyze_compact(
    path: Path,
    *,
    fmt: str | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    **options: Unpack[AnalyzerOptions],
) -> tuple[TraceAnalysis, ChainStore]:
    """``analyze`` with the chains in a compact ``ChainStore`` beside an analysis whose ``chains`` is empty: what
    ``phasef trace stats`` uses, so a trace of hundreds of thousands of chains stays within a few dozen MB."""
    from pipeline.traces.importers import detect_format, import_trace

    path = Path(path)
    chosen = fmt or detect_format(path)
    analyzer = TraceAnalyzer(str(path), **options)
    if chosen == "phasef":
        from pipeline.traces.analysis_split import analyze_phasef

        sha, _ = analyze_phasef(path, analyzer, max_line_bytes)
    else:
        records, bad_lines = import_trace(path, chosen)
        _feed_records(analyzer, records, bad_lines)
        sha = file_sha256(path)
    return analyzer.finish(sha, with_chains=False), analyzer.chains
