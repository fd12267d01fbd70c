"""The viewer's per-line summary of a trace: record kind, episode, tick, recovery chain, flags (death, recovery,
trap, schema error, thrash, deadlock, ...), context size and latency, in compact parallel arrays.

``_summarize_batch`` is the hot loop of the viewer (millions of lines). Lines are decoded with
the analyzer's decoder (``records.TraceRecord``); a line it does not take as a record of a known kind goes the exact
way (orjson), so bad lines stay what they were.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from pipeline.traces.records import decode_fast_errors, fast_decoder, record_from_dict, valid_utf8
from pipeline.traces.summary_columns import (
    _FILTER_MASK,
    FLAG_BAD_LINE,
    FLAG_DEADLOCK,
    FLAG_DEATH,
    FLAG_ERROR,
    FLAG_FAILURE,
    FLAG_PROGRESS,
    FLAG_RECOVERED,
    FLAG_RECOVERY,
    FLAG_SCHEMA_ERROR,
    FLAG_THRASH,
    FLAG_TRAP,
    INT32_MAX,
    INT32_MIN,
    KIND_CODES,
    KIND_EPISODE_END,
    KIND_TICK,
    KIND_UNKNOWN,
    NO_ID,
    _EpisodeRuns,
    _extend_narrow,
    _Summaries,
    flag_lines_upto,
)
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
DEADLOCK_WINDOW = DEFAULT_DEADLOCK_WINDOW


def _run_flags(st: _EpisodeRuns, action: Any, outcome: Any, error_class: Any) -> int:
    """Thrash and repeated-precondition deadlock marks, by the definitions of ``pipeline.traces.analysis``.

    Thrash: the same action verb failing with the same error class ``THRASH_MIN`` times or more before that verb
    succeeds; the same with a precondition error (the world refusing: a lock, a missing thing) is a deadlock. A tick
    is marked from the repeat that turns the pattern on: earlier ticks of the run are not marked afterwards, so a
    mark is final once written (filters only ever append).
    """
    if outcome in FAILING_TICK_OUTCOMES:
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


def _summarize_batch(s: _Summaries, first: int, lines: list[bytes]) -> None:
    """Append the summaries of ``lines`` (line numbers from ``first``) to ``s``.

    This is the hot loop of the indexer (millions of lines), hence the local names and one ``extend`` per column.
    Lines are decoded with the analyzer's decoder (``records.TraceRecord``: only the fields summaries read); a line
    it does not take as a record of a known kind goes the exact way (orjson), so bad lines stay what they were.
    """
    decode = fast_decoder.decode
    decode_errors = decode_fast_errors
    fast = valid_utf8(b"\n".join(lines))
    kind_codes = KIND_CODES
    intern_episode = s.episodes.intern
    episodes_state = s.episode_state
    kinds: list[int] = []
    flags_col: list[int] = []
    episodes: list[int] = []
    ticks: list[int] = []
    chains: list[int] = []
    contexts: list[int] = []
    latencies: list[float] = []
    flagged: list[tuple[int, int]] = []
    nan = math.nan
    last_episode_name: Any = None
    last_episode = NO_ID
    for i, raw in enumerate(lines, first):
        kind = KIND_UNKNOWN
        flags = 0
        episode = tick = chain = NO_ID
        context_chars = 0
        latency = nan
        rec: Any = None
        if fast:
            try:
                rec = decode(raw)
            except decode_errors:
                pass
            else:
                kind_name = rec.kind
                kind = kind_codes.get(kind_name, KIND_UNKNOWN) if type(kind_name) is str else KIND_UNKNOWN
                if kind == KIND_UNKNOWN:
                    rec = None  # not a known record: look at it the exact way below
        if rec is None:
            obj = _decode_exact(raw)
            if type(obj) is dict and obj:
                rec = record_from_dict(obj)
                kind_name = rec.kind
                kind = kind_codes.get(kind_name, KIND_UNKNOWN) if type(kind_name) is str else KIND_UNKNOWN
            elif obj is None or type(obj) is not dict:
                flags |= FLAG_BAD_LINE
        if rec is not None:
            ep = rec.episode
            if ep == last_episode_name:  # consecutive records mostly share their episode
                episode = last_episode
            elif type(ep) is str:
                episode = last_episode = intern_episode(ep)
                last_episode_name = ep
            elif type(ep) is int:
                episode = intern_episode(str(ep))
            if kind == KIND_TICK:
                tick = rec.tick
                if type(tick) is not int or not INT32_MIN <= tick <= INT32_MAX:
                    tick = NO_ID
                outcome = rec.outcome
                role = rec.chain_role
                error_class = rec.error_class
                trap = rec.trap
                if outcome == "death" or role == "death":
                    flags |= FLAG_DEATH
                elif outcome == "error" or outcome == "timeout":
                    flags |= FLAG_ERROR
                if role is not None:
                    if role == "attempt":
                        flags |= FLAG_RECOVERY
                    elif role == "recovered":
                        flags |= FLAG_RECOVERY | FLAG_RECOVERED
                    elif role == "failure":
                        flags |= FLAG_FAILURE
                if rec.recovery:
                    flags |= FLAG_RECOVERY
                if trap:
                    flags |= FLAG_TRAP
                    if trap == "deadlock":
                        flags |= FLAG_DEADLOCK
                if error_class is not None:
                    if error_class == "SchemaViolation":
                        flags |= FLAG_SCHEMA_ERROR
                    elif error_class == "Deadlock":
                        flags |= FLAG_DEADLOCK
                    elif type(error_class) is str and error_class.lower().startswith("thrash"):
                        flags |= FLAG_THRASH
                if rec.schema_error:
                    flags |= FLAG_SCHEMA_ERROR
                progress = rec.progress
                if progress is True:
                    flags |= FLAG_PROGRESS
                if episode != NO_ID:
                    runs = episodes_state.get(episode)
                    if runs is None:
                        runs = episodes_state[episode] = _EpisodeRuns()
                    if progress is True:
                        runs.no_progress = 0
                    elif progress is False:
                        runs.no_progress += 1
                        if runs.no_progress >= DEADLOCK_WINDOW:  # no progress for a window of ticks
                            flags |= FLAG_DEADLOCK
                    if runs.runs or outcome in FAILING_TICK_OUTCOMES:
                        flags |= _run_flags(runs, rec.action, outcome, error_class)
                chain_id = rec.chain_id
                if chain_id is not None:
                    chain = _chain_number(s, episode, str(chain_id), i)
                context_chars = rec.context_chars
                if type(context_chars) is not int or not 0 <= context_chars <= INT32_MAX:
                    context_chars = 0
                lat = rec.latency_s
                if type(lat) is float or type(lat) is int:
                    latency = lat
            elif kind == KIND_EPISODE_END:
                outcome = rec.outcome
                if outcome in DEATH_OUTCOMES:
                    flags |= FLAG_DEATH
                elif outcome in ("failure", "aborted"):
                    flags |= FLAG_ERROR
                episodes_state.pop(episode, None)
            elif kind == KIND_UNKNOWN:
                flags |= FLAG_BAD_LINE
        kinds.append(kind)
        flags_col.append(flags)
        episodes.append(episode)
        ticks.append(tick)
        chains.append(chain)
        contexts.append(context_chars)
        latencies.append(latency)
        if flags & _FILTER_MASK:
            flagged.append((i, flags))
    # ``kind`` last: its length is the number of summarized lines, so a reader in another thread that checks
    # ``i < len(summaries)`` finds every other column already holding line ``i``
    s.flags.extend(flags_col)
    s.episode.extend(episodes)
    _extend_narrow(s, "tick", ticks)
    s.chain.extend(chains)
    _extend_narrow(s, "context_chars", contexts)
    s.latency.extend(latencies)
    s.kind.extend(kinds)
    flag_lines = flag_lines_upto(s, first + len(lines))
    for i, flags in flagged:
        for flag, lines_with_flag in flag_lines.items():
            if flags & flag:
                lines_with_flag.append(i)
    s.flagged_upto = first + len(lines)


def _decode_exact(raw: bytes) -> Any:
    """A line as orjson sees it: the decoded value, None when it is not JSON, ``{}`` for a blank line (harmless)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None if raw.strip() else {}


def _chain_number(s: _Summaries, episode: int, chain_id: str, line: int) -> int:
    """Chains are named per episode (``c1`` may recur in every episode), so the key joins both."""
    key = f"{s.episodes.names[episode] if episode != NO_ID else ''}\x1f{chain_id}"
    known = len(s.chains.names)
    chain = s.chains.intern(key)
    if chain == known:
        s.chain_lines.new(line)
        s.chain_episode.append(episode)
    else:
        s.chain_lines.last[chain] = line
    return chain
