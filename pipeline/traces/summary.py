"""The viewer's per-line summary of a trace: record kind, episode, tick, recovery chain, flags (death, recovery,
trap, schema error, thrash, deadlock, ...), context size and latency, in compact parallel arrays.

``_summarize_batch`` is the hot loop of the viewer (millions of lines). A well-typed line is summarized by the C loop
(``summary_native``) where it is built, else decoded with the summary's own strict decoder (``summary_records``:
types checked in C, flags and verbs from caches); any other line goes the lenient way: the analyzer's decoder
(``records.TraceRecord``), and for a line it does not take as a record of a known kind, orjson, so bad lines stay
what they were.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Sequence
from typing import Any

import orjson

from pipeline.traces import summary_native, summary_records
from pipeline.traces.records import as_orjson_reads, decode_fast_errors, fast_decoder, record_from_dict, valid_utf8
from pipeline.traces.summary_columns import (
    _FILTER_MASK,
    _NARROW_RANGE,
    FLAG_BAD_LINE,
    FLAG_DEADLOCK,
    FLAG_DEATH,
    FLAG_ERROR,
    FLAG_THRASH,
    INT32_MAX,
    INT32_MIN,
    KIND_CODES,
    KIND_EPISODE_END,
    KIND_TICK,
    KIND_UNKNOWN,
    NO_ID,
    WIDE,
    _Column,
    _EpisodeRuns,
    _Summaries,
    _widen,
    chain_number,
    flag_lines_upto,
)
from pipeline.traces.summary_records import (
    BAD_ACTION,
    ActionInfo,
    _tick_flags,
    action_info,
    strict_errors,
    tick_flags,
)
from pipeline.traces.summary_records import strict_decoder as fast_decoder_strict
from pipeline.traces.verbs import (
    DEATH_OUTCOMES,
    DEFAULT_DEADLOCK_WINDOW,
    DEFAULT_THRASH_MIN,
    FAILING_TICK_OUTCOMES,
    INVALID_VERB,
    PRECONDITION_CLASSES,
    _tool_name,
    action_verb,
)

THRASH_MIN = DEFAULT_THRASH_MIN
_FLOAT_MAX = sys.float_info.max
Block = bytes | memoryview
"""Lines as one bytes-like block, split at newlines (a worker's batch, read in place by the C loop)."""
DEADLOCK_WINDOW = DEFAULT_DEADLOCK_WINDOW


native = summary_native.load()
"""The C loop, or None (the Python loop, with the same results)."""


def _run_flags(st: _EpisodeRuns, action: Any, outcome: Any, error_class: Any) -> int:
    """Thrash and repeated-precondition deadlock marks, by the definitions of ``pipeline.traces.analysis``.

    Thrash: the same action verb failing with the same error class ``THRASH_MIN`` times or more before that verb
    succeeds; the same with a precondition error (the world refusing: a lock, a missing thing) is a deadlock. A tick
    is marked from the repeat that turns the pattern on: earlier ticks of the run are not marked afterwards, so a
    mark is final once written (filters only ever append).
    """
    if type(outcome) is str and outcome in FAILING_TICK_OUTCOMES:  # (an outcome given as a list is no failure)
        if not isinstance(error_class, str) or not error_class:
            error_class = "Timeout" if outcome == "timeout" else ("Fatal" if outcome == "death" else "Error")
        runs = st.runs.setdefault(action_verb(action) or INVALID_VERB, {})
        count = runs.get(error_class, 0) + 1
        runs[error_class] = count
        if count >= THRASH_MIN:
            return FLAG_DEADLOCK if error_class in PRECONDITION_CLASSES else FLAG_THRASH
        return 0
    if type(action) is not dict:
        return 0  # no verb: nothing succeeded
    # A success ends the runs of its verb (and of failures without a verb). The tool name is cheap and every verb
    # starts with its tool's name, so the full verb is worked out only when a run of that tool is open.
    tool = _tool_name(action) or "?"
    open_runs = st.runs
    for key in open_runs:
        if key == INVALID_VERB or key.split(":", 1)[0] == tool:
            break
    else:
        return 0
    verb = action_verb(action)
    if verb is not None:
        open_runs.pop(verb, None)
        open_runs.pop(INVALID_VERB, None)
    return 0


def _summarize_batch(s: _Summaries, first: int, lines: list[bytes] | Block, *, flag_lines: bool = True) -> int:
    """Append the summaries of ``lines`` (line numbers from ``first``; bytes-like: a block of lines, split at
    newlines) to ``s``; returns how many lines that was.

    The hot loop of the indexer (millions of lines): the C loop (``summary_native``, which reads a block in place)
    where it is built; else one flat list of rows and one ``extend`` per column. A well-typed line is decoded with
    ``summary_records.SummaryRecord`` (types checked in C, flags and verbs from caches); any other line goes the
    lenient way (``_summarize_lenient``), so bad lines stay what they were. ``flag_lines``: also append the lines to
    the filter lists (a worker sends the columns only: the viewer derives the lists from them).
    """
    valid = (native is not None and native.all_ascii(lines)) or valid_utf8(
        b"\n".join(lines) if isinstance(lines, list) else bytes(lines)
    )
    if valid and native is not None and fast_decoder_strict is summary_records.strict_decoder:
        flags = summary_native.summarize(
            native, s, first, lines, _summarize_python, chain_number, THRASH_MIN, DEADLOCK_WINDOW
        )
        if flag_lines:
            summary_native.flag_lines(native, s, first, flags)
        s.flagged_upto = first + len(flags) // 2
        return len(flags) // 2
    parts = lines if isinstance(lines, list) else bytes(lines).split(b"\n")
    if valid:
        rows = _summarize_python(s, first, parts)
    else:
        rows = []
        for i, raw in enumerate(parts, first):
            rows += _summarize_lenient(s, i, raw, False)
    flags_col = rows[1::ROW]
    # ``kind`` last: its length is the number of summarized lines, so a reader in another thread that checks
    # ``i < len(summaries)`` finds every other column already holding line ``i``
    _extend(s.flags, flags_col)
    _extend(s.episode, rows[2::ROW])
    _extend_column(s, "tick", rows[3::ROW])
    _extend(s.chain, rows[4::ROW])
    _extend_column(s, "context_chars", rows[5::ROW])
    _extend(s.latency, rows[6::ROW])
    _extend(s.kind, rows[0::ROW])
    if flag_lines:
        _flag_lines(s, first, flags_col)
    s.flagged_upto = first + len(parts)
    return len(parts)


def _flag_lines(s: _Summaries, first: int, flags_col: Sequence[int]) -> None:
    """Append the lines from ``first`` to the filter lists of the flags they have (``flags_col``: one per line)."""
    flagged = [(i, flags) for i, flags in enumerate(flags_col, first) if flags & _FILTER_MASK]
    if flagged:
        for flag, lines_with_flag in flag_lines_upto(s, first + len(flags_col)).items():
            lines_with_flag.extend([i for i, flags in flagged if flags & flag])


def _extend(column: _Column, values: list[Any]) -> None:
    """``column.extend(values)``, packed by ``struct`` (about 4x faster than the array's own conversion per item);
    the array's way for what ``struct`` refuses (a latency beyond a 32-bit float's range), with the same result.
    A compact column (``summary_runs``, ``summary_sparse``) takes the list itself: its ``frombytes`` is made for a
    worker's big batches and imports numpy, which the viewer's first lines (summarized on open, in the UI thread)
    must not wait for."""
    if type(column) is not array:
        column.extend(values)
        return
    try:
        column.frombytes(struct.pack(f"{len(values)}{column.typecode}", *values))
    except (struct.error, OverflowError):
        column.extend(values)


def _extend_column(s: _Summaries, name: str, values: list[int]) -> None:
    """``values`` onto the column ``name`` (by ``_extend``), a narrow column widened first when a value does not fit."""
    column: array[int] = getattr(s, name)
    if column.typecode != WIDE and values:
        low, high = _NARROW_RANGE[column.typecode]
        if min(values) < low or max(values) > high:
            column = _widen(s, name)
    _extend(column, values)


Row = tuple[int, int, int, int, int, int, float]
"""A line's summary: kind, flags, episode, tick, chain, context size, latency (``ROW`` items in a flat list)."""
ROW = 7


def _summarize_python(s: _Summaries, first: int, lines: list[bytes]) -> list[Any]:
    """The rows of ``lines`` (valid UTF-8) in one flat list: well-typed lines here, the others through
    ``_summarize_lenient``."""
    decode = fast_decoder_strict.decode
    errors = strict_errors
    intern_episode = s.episodes.intern
    state_get = s.episode_state.get
    episodes_state = s.episode_state
    flag_cache = summary_records._ticks
    get_flags = tick_flags
    get_action = action_info
    actions_get = summary_records._actions.get
    lenient = _summarize_lenient
    rows: list[Any] = []
    nan = math.nan
    last_episode_name: Any = None
    last_episode = NO_ID
    last_runs = _EpisodeRuns()
    for i, raw in enumerate(lines, first):
        try:
            rec = decode(raw)
        except errors:
            rows += lenient(s, i, raw, True)
            last_episode_name = None
            continue
        kind = rec.kind
        ep = rec.episode
        if kind == "tick":
            key = (rec.outcome, rec.chain_role, rec.error_class, rec.trap, rec.recovery, rec.schema_error, rec.progress)
            flags, run_class, mark = flag_cache.get(key) or get_flags(key)
            info = actions_get(bytes(rec.action)) or get_action(rec.action)
            if info is BAD_ACTION:  # an action the lenient decoder does not take as it is: the line goes that way
                rows += lenient(s, i, raw, True)
                last_episode_name = None  # (the lenient way may have changed any episode's state)
                continue
            if ep is None:
                episode = NO_ID
            elif ep == last_episode_name:  # consecutive ticks mostly share their episode: its number and state
                episode = last_episode
                runs = last_runs
            else:
                episode = intern_episode(ep)
                found = state_get(episode)
                runs = episodes_state[episode] = _EpisodeRuns() if found is None else found
                last_episode_name, last_episode, last_runs = ep, episode, runs
            if ep is not None:
                progress = rec.progress
                if progress is True:
                    runs.no_progress = 0
                elif progress is False:
                    runs.no_progress += 1
                    if runs.no_progress >= DEADLOCK_WINDOW:  # no progress for a window of ticks
                        flags |= FLAG_DEADLOCK
                if run_class is not None:  # a failure: one more in the run of its verb and error class
                    counts = runs.runs.get(info[0])
                    if counts is None:
                        counts = runs.runs[info[0]] = {}
                    count = counts.get(run_class, 0) + 1
                    counts[run_class] = count
                    if count >= THRASH_MIN:
                        flags |= mark
                elif runs.runs:
                    _success_ends_runs(runs.runs, info)
            tick = rec.tick
            chain_id = rec.chain_id
            lat = rec.latency_s
            if type(lat) is int and not -_FLOAT_MAX <= lat <= _FLOAT_MAX:
                lat = None  # (beyond a double: unknown)
            rows += (
                KIND_TICK,
                flags,
                episode,
                NO_ID if tick is None else tick,
                NO_ID if chain_id is None else chain_number(s, episode, chain_id, i),
                rec.context_chars or 0,
                nan if lat is None else lat,
            )
            continue
        if rec.action and get_action(rec.action) is BAD_ACTION:
            rows += lenient(s, i, raw, True)
            last_episode_name = None
            continue
        last_episode_name = None  # (an episode's start or end: its state is looked up again at its next tick)
        episode = NO_ID if ep is None else intern_episode(ep)
        flags = 0
        if kind == "episode_end":
            outcome = rec.outcome
            if outcome in DEATH_OUTCOMES:
                flags = FLAG_DEATH
            elif outcome in ("failure", "aborted"):
                flags = FLAG_ERROR
            episodes_state.pop(episode, None)
            rows += (KIND_EPISODE_END, flags, episode, NO_ID, NO_ID, 0, nan)
        else:
            rows += (KIND_CODES[kind], 0, episode, NO_ID, NO_ID, 0, nan)
    return rows


def _success_ends_runs(open_runs: dict[str, dict[str, int]], info: ActionInfo) -> None:
    """A tick that did not fail ends the runs of its verb (``_run_flags``, with the verb facts worked out already)."""
    _, is_dict, tool, verb = info
    if not is_dict:
        return  # no verb: nothing succeeded
    for key in open_runs:
        if key == INVALID_VERB or key.split(":", 1)[0] == tool:
            break
    else:
        return
    if verb is not None:
        open_runs.pop(verb, None)
        open_runs.pop(INVALID_VERB, None)


def _summarize_lenient(s: _Summaries, i: int, raw: bytes, fast: bool) -> Row:
    """Line ``i``'s row the lenient way: the analyzer's decoder (``records.TraceRecord``, no types checked) when
    ``fast`` (the batch is valid UTF-8), orjson for a line it does not take as a record of a known kind."""
    kind = KIND_UNKNOWN
    flags = 0
    episode = tick = chain = NO_ID
    context_chars = 0
    latency = math.nan
    rec: Any = None
    if fast:
        try:
            rec = fast_decoder.decode(raw)
        except decode_fast_errors:
            pass
        else:
            kind_name = rec.kind
            kind = KIND_CODES.get(kind_name, KIND_UNKNOWN) if type(kind_name) is str else KIND_UNKNOWN
            if kind == KIND_UNKNOWN:
                rec = None  # not a known record: look at it the exact way below
    if rec is None:
        obj = _decode_exact(raw)
        if type(obj) is dict and obj:
            rec = record_from_dict(obj)
            kind_name = rec.kind
            kind = KIND_CODES.get(kind_name, KIND_UNKNOWN) if type(kind_name) is str else KIND_UNKNOWN
        elif obj is None or type(obj) is not dict:
            flags |= FLAG_BAD_LINE
    if rec is None:
        return (kind, flags, episode, tick, chain, context_chars, latency)
    ep = as_orjson_reads(rec.episode)
    if type(ep) is str:
        episode = s.episodes.intern(ep)
    elif type(ep) is int:
        episode = s.episodes.intern(str(ep))
    if kind == KIND_TICK:
        tick = rec.tick
        if type(tick) is not int or not INT32_MIN <= tick <= INT32_MAX:
            tick = NO_ID
        outcome = rec.outcome
        error_class = rec.error_class
        flags |= _tick_flags(
            outcome, rec.chain_role, error_class, rec.trap, rec.recovery, rec.schema_error, rec.progress
        )
        progress = rec.progress
        if episode != NO_ID:
            runs = s.episode_state.get(episode)
            if runs is None:
                runs = s.episode_state[episode] = _EpisodeRuns()
            if progress is True:
                runs.no_progress = 0
            elif progress is False:
                runs.no_progress += 1
                if runs.no_progress >= DEADLOCK_WINDOW:  # no progress for a window of ticks
                    flags |= FLAG_DEADLOCK
            if runs.runs or (type(outcome) is str and outcome in FAILING_TICK_OUTCOMES):
                flags |= _run_flags(runs, rec.action, outcome, error_class)
        chain_id = as_orjson_reads(rec.chain_id)
        if chain_id is not None:
            chain = chain_number(s, episode, str(chain_id), i)
        context_chars = rec.context_chars
        if type(context_chars) is not int or not 0 <= context_chars <= INT32_MAX:
            context_chars = 0
        lat = rec.latency_s
        if type(lat) is float:
            latency = lat
        elif type(lat) is int:
            latency = float(lat) if -_FLOAT_MAX <= lat <= _FLOAT_MAX else math.nan  # (beyond a double: unknown)
    elif kind == KIND_EPISODE_END:
        outcome = rec.outcome
        if type(outcome) is str and outcome in DEATH_OUTCOMES:
            flags |= FLAG_DEATH
        elif outcome in ("failure", "aborted"):
            flags |= FLAG_ERROR
        s.episode_state.pop(episode, None)
    elif kind == KIND_UNKNOWN:
        flags |= FLAG_BAD_LINE
    return (kind, flags, episode, tick, chain, context_chars, latency)


def _decode_exact(raw: bytes) -> Any:
    """A line as orjson sees it: the decoded value, None when it is not JSON, ``{}`` for a blank line (harmless)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None if raw.strip() else {}
