"""The summary's hot loop in C (``_summary_native``, built at install where a C compiler is), and its glue.

The C loop gives, line by line, the rows of ``summary._summarize_python`` (``tests/test_traces_summary_native.py``
compares both on generated lines): it reads the common, well-typed line itself and hands every other line to the
Python path, one at a time, with the same per-episode state. ``PHASEF_SUMMARY_NATIVE=0`` turns it off (the Python
loop, the same results, about twice the time).
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable
from types import ModuleType
from typing import Any

from pipeline.traces import summary_records
from pipeline.traces.summary_columns import (
    _NARROW_RANGE,
    WIDE,
    ListNames,
    _ChainLines,
    _EpisodeRuns,
    _Summaries,
    append_column,
    flag_lines_upto,
)
from pipeline.traces.summary_names import NameStore
from pipeline.traces.summary_records import BAD_ACTION, action_info, tick_flags
from pipeline.traces.verbs import DEATH_OUTCOMES, INVALID_VERB

ENV = "PHASEF_SUMMARY_NATIVE"


API = 3
"""The version of the C module's interface this code calls (its ``API``): ``summarize``'s arguments, the functions
there are. A build of another version (the source changed since it was built: ``make setup`` builds it again) is not
used: the Python loop gives the same results."""
_stale_told: list[bool] = []


def load() -> ModuleType | None:
    """The C loop, unless ``PHASEF_SUMMARY_NATIVE=0``; None when it is off, not built, or built from another version
    of its source (said once, as a warning)."""
    if os.environ.get(ENV) == "0":
        return None
    try:
        from pipeline.traces import _summary_native
    except ImportError:
        return None
    if getattr(_summary_native, "API", None) != API:
        if not _stale_told:
            _stale_told.append(True)
            import logging

            logging.getLogger(__name__).warning(
                "the trace summary's C loop was built from an older source (%s): using the Python loop, slower; "
                "run `make setup` to build it again",
                _summary_native.__file__,
            )
        return None
    return _summary_native


def summarize(
    native: Any,
    s: _Summaries,
    first: int,
    lines: list[bytes] | bytes | memoryview,
    python_rows: Callable[[_Summaries, int, list[bytes]], list[Any]],
    chain_number: Callable[[_Summaries, int, str, int], int],
    thrash_min: int,
    deadlock_window: int,
) -> bytes:
    """Append the summaries of ``lines`` (valid UTF-8, line numbers from ``first``; bytes: a block of lines, split at
    newlines) to the columns of ``s`` through the C loop; ``python_rows(s, i, [raw])`` gives the row of a line it
    does not take. Returns the lines' flags (``'H'`` items) for the filter lists."""
    kind, flags, episode, tick, chain, context, latency, tick_lo, tick_hi, context_lo, context_hi = native.summarize(
        lines,
        first,
        s,
        lambda i, raw: python_rows(s, i, [raw]),
        s.episodes if type(s.episodes) is NameStore else s.episodes.intern,  # (a NameStore: interned into in C)
        s.episode_state,
        _EpisodeRuns,
        summary_records._tick_bytes,
        tick_flags,
        summary_records._actions,
        action_info,
        BAD_ACTION,
        INVALID_VERB,
        chain_number,
        DEATH_OUTCOMES,
        thrash_min,
        deadlock_window,
        summary_records.CACHE_MAX,
        _chains_here(s),
    )
    s.flags.frombytes(flags)
    s.episode.frombytes(episode)  # (a compact column finds its runs or rows in C, without numpy)
    _extend_narrow_int32(native, s, "tick", tick, tick_lo, tick_hi)
    s.chain.frombytes(chain)
    _extend_narrow_int32(native, s, "context_chars", context, context_lo, context_hi)
    s.latency.frombytes(latency)
    s.kind.frombytes(kind)  # last: its length is the number of summarized lines (see summary._summarize_batch)
    return bytes(flags)


def _chains_here(
    s: _Summaries,
) -> tuple[dict[str, int] | NameStore, list[str] | None, array[int], array[int], array[int]] | None:
    """A summary's chains, which the C loop numbers itself as ``chain_number`` does (~100,000 new chains a GB, asked
    of Python one by one before): a transient summary's ``ListNames`` (its dict and list), or a ``NameStore`` (the
    viewer's summary, a local pass's) interned into in C; None: it asks ``chain_number``."""
    chains, lines = s.chains, s.chain_lines
    if type(lines) is not _ChainLines:
        return None
    if type(chains) is ListNames:
        return chains.ids, chains.names, lines.first, lines.last, s.chain_episode
    if type(chains) is NameStore:
        return chains, None, lines.first, lines.last, s.chain_episode
    return None


def flag_lines(native: Any, s: _Summaries, first: int, flags: bytes | memoryview) -> None:
    """Append lines ``first..`` to the filter lists of ``s`` for the flags they have (``flags``: their ``'H'`` items),
    one pass in C per list's item type (the Python way took as long as a fifth of the C loop)."""
    lists = flag_lines_upto(s, first + len(flags) // 2)
    for code in {lines.typecode for lines in lists.values()}:
        picked = [(flag, lines) for flag, lines in lists.items() if lines.typecode == code]
        found = native.flag_rows(flags, first, tuple(flag for flag, _ in picked), code)
        for (_, lines), rows in zip(picked, found, strict=True):
            lines.frombytes(rows)


def _extend_narrow_int32(native: Any, s: _Summaries, name: str, data: bytes, low: int, high: int) -> None:
    """``summary_columns.append_column`` for 32-bit values given as bytes, ``low`` and ``high`` their least and
    greatest: narrowed first when they fit the column's narrow type."""
    typecode = getattr(s, name).typecode
    if typecode != WIDE:
        narrow_low, narrow_high = _NARROW_RANGE[typecode]
        if narrow_low <= low and high <= narrow_high:
            append_column(s, name, typecode, native.narrow(data, typecode))
            return
    append_column(s, name, WIDE, data)
