"""One decoder of trace lines for every summary: ``phasef trace stats`` (the analyzer) and the viewer's badges.

A trace line is decoded into a ``TraceRecord``: a msgspec Struct holding only the fields any summary reads. msgspec
decodes straight into the Struct's slots and skips every other field without building it (raw model output,
prompts, token counts), about twice as fast as ``orjson.loads`` into a dict, and the summaries then read
attributes instead of looking keys up in a dict.

The fields are typed ``Any`` on purpose: the decoder checks no types, so the summaries see exactly what the line
holds and keep their own checks (a ``tick`` given as a string is reported by the analyzer, not dropped here).

What orjson rejects, this decoder must reject too, so bad lines stay bad lines: msgspec does not check the UTF-8 of
fields it skips, so ``decode_lines`` only takes the fast path for a batch that is valid UTF-8 as a whole (one check
in C per batch); a line msgspec does not accept is decoded again with orjson, which gives the exact reason (or, for
a JSON value that is not an object, the value itself).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson


class TraceRecord(msgspec.Struct, gc=False):
    """The fields of a trace record that summaries read; a field the line lacks (or holds as null) is None.

    ``get`` mirrors ``dict.get`` so code that reads rare fields works on records and plain dicts alike.
    ``gc=False``: a record holds decoded JSON only (no cycles), so the garbage collector need not track it.
    """

    # In the order the trace writer emits them (``pipeline.traces.schema``): msgspec tries the field after the
    # last one matched first, so a line in this order is matched key by key without a search (~10% faster).
    schema: Any = None
    kind: Any = None
    run_id: Any = None
    episode: Any = None
    ts: Any = None
    ts_estimated: Any = None
    context_window: Any = None
    tick: Any = None
    latency_s: Any = None
    context_chars: Any = None
    context: Any = None
    action: Any = None
    schema_error: Any = None
    outcome: Any = None
    error_class: Any = None
    error: Any = None
    observation: Any = None
    trap: Any = None
    chain_id: Any = None
    chain_role: Any = None
    recovery: Any = None
    progress: Any = None
    reason: Any = None

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None)
        return default if value is None else value


RECORD_FIELDS: tuple[str, ...] = TraceRecord.__struct_fields__

fast_decoder = msgspec.json.Decoder(TraceRecord)
"""Decodes a line into a ``TraceRecord`` (valid UTF-8 only: see the module docstring)."""
_decode = fast_decoder.decode


def record_from_dict(obj: dict[str, Any]) -> TraceRecord:
    """The record of an already decoded object (importers produce dicts)."""
    get = obj.get
    return TraceRecord(*[get(name) for name in RECORD_FIELDS])


decode_fast_errors = (msgspec.DecodeError, msgspec.ValidationError)
"""What the fast decoder raises for a line it does not take (then ``decode_fallback`` says what the line is)."""


def decode_fallback(raw: bytes) -> TraceRecord | orjson.JSONDecodeError | Any:
    """Line -> ``TraceRecord`` the slow, exact way (orjson): a JSON value that is not an object is returned as
    decoded (a list, a string, None, ...), a line that is not JSON as the ``orjson.JSONDecodeError`` naming why."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return exc
    return record_from_dict(value) if type(value) is dict else value


def decode_lines(lines: list[bytes], utf8_checked: bool = False) -> Iterator[TraceRecord | Any]:
    """Decode each line: a ``TraceRecord``, or what ``decode_fallback`` returns for a line that is not an object.

    ``utf8_checked``: the caller already knows the lines are valid UTF-8.
    """
    fast = utf8_checked or valid_utf8(b"\n".join(lines))
    decode = _decode
    errors = decode_fast_errors
    for raw in lines:
        if fast:
            try:
                yield decode(raw)
                continue
            except errors:
                pass
        yield decode_fallback(raw)


def valid_utf8(data: bytes) -> bool:
    """True when ``data`` is valid UTF-8 (ASCII checked first: it is much faster and the common case)."""
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def as_orjson_reads(value: Any) -> Any:
    """An integer as orjson reads it: beyond 64 bits (below -2**63 or from 2**64), a float. msgspec keeps it whole,
    so without this a line's episode or chain would depend on which decoder took the line. (Beyond a double orjson
    refuses the line; such a value reads as infinite here, which is no episode either.)"""
    if type(value) is int and not _INT64_MIN <= value <= _UINT64_MAX:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1
