"""The summary's strict decoder (``summary_records.SummaryRecord``: types checked by msgspec, flags and verbs from
caches) gives, column by column, exactly the summary of the lenient path it falls back to (the analyzer's decoder,
then orjson), on generated lines with wrong types, nulls, out-of-range integers, booleans where integers belong,
unknown kinds, numbers out of a double's range, duplicate keys and bad UTF-8."""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.traces import summary as summary_module
from pipeline.traces import summary_records
from pipeline.traces.summary import _summarize_batch
from pipeline.traces.summary_columns import FLAG_DEADLOCK, FLAG_THRASH, _Summaries
from tests.test_traces_summary_split import key_of

ODD = [None, True, False, 0, -1, 7, 2**15, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63, 2**70, 0.5, -2.5, ""]
ODD += ["x", "tick", "deadlock", "thrash-loop", "Thrash", "SchemaViolation", "Deadlock", "NotFound", [1], {"a": 1}]
values = st.one_of(st.sampled_from(ODD), st.text(max_size=6), st.integers(), st.floats(allow_nan=False))
actions = st.one_of(
    st.sampled_from([None, "run_tests", 3, [1], {}, {"tool": ""}, {"tool": 5, "name": "edit"}, {"tool": "a:b"}]),
    st.fixed_dictionaries({"tool": st.sampled_from(["run_tests", "edit", "bash", "grep", "ipython"])}),
    st.fixed_dictionaries(
        {
            "tool": st.sampled_from(["bash", "ipython", "str_replace_editor"]),
            "args": st.fixed_dictionaries(
                {"command": st.sampled_from(["ls -l", "pytest", "cd x && python a.py", "view"]), "code": values}
            ),
        }
    ),
)
GOOD = {
    "kind": st.sampled_from(["tick"] * 10 + ["episode_start", "episode_end"]),
    "episode": st.sampled_from(["e1", "e1", "e2", "e3", None, ""]),
    "tick": st.integers(-5, 70_000),
    "latency_s": st.one_of(st.floats(0, 5, width=32), st.integers(0, 3), st.none()),
    "context_chars": st.one_of(st.integers(0, 70_000), st.none()),
    "action": actions,
    "schema_error": st.sampled_from(["missing tool", "", None]),
    "outcome": st.sampled_from(["ok", "ok", "error", "error", "timeout", "death", "success", "failure", "aborted"]),
    "error_class": st.sampled_from(["CheckFailed", "NotFound", "Timeout", "", None, "thrash", "SchemaViolation"]),
    "trap": st.sampled_from(["deadlock", "hang", "", None]),
    "chain_id": st.sampled_from(["c1", "c2", None]),
    "chain_role": st.sampled_from(["failure", "attempt", "recovered", "death", None]),
    "recovery": st.sampled_from(["reflex", "", None, True, False]),
    "progress": st.sampled_from([True, False, False, None]),
}
"""Well-typed values: lines made of these go the strict way."""
ODD_FIELDS = {
    "kind": st.sampled_from(["weird", None, 3, "Tick"]),
    "episode": st.sampled_from([7, True, [1]]),
    "recovery": st.sampled_from([0, 1, [1]]),
    "progress": st.sampled_from(["yes", 0, 1]),
}
"""Values of the wrong type or out of range (the lenient way); any field may also take one of ``values``."""


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    rec: dict[str, Any] = {}
    odd = draw(st.integers(0, 3)) == 0  # a quarter of the lines hold a value of an odd type or range
    for key, strategy in GOOD.items():
        if draw(st.integers(0, 3)):  # most fields present, any of them may be missing
            rec[key] = draw(strategy)
            if odd and draw(st.integers(0, 4)) == 0:
                rec[key] = draw(st.one_of(ODD_FIELDS.get(key, values), values))
    if draw(st.booleans()):
        rec["observation"] = draw(st.text(max_size=8))
    raw = json.dumps(rec, separators=(",", ":")).encode()  # (big integers too; lone surrogates escaped)
    damage = draw(st.sampled_from(["none"] * 10 + ["1e400", "1e400-action", "dup", "utf8", "utf8-read", "torn"]))
    if damage == "1e400":
        raw = raw[:-1] + (b',"x":1e400}' if len(raw) > 2 else b'"x":1e400}')
    elif damage == "1e400-action" and b'"action":{' in raw:
        raw = raw.replace(b'"action":{', b'"action":{"big":1e400,', 1)
    elif damage == "dup":
        raw = raw[:-1] + (b"," if len(raw) > 2 else b"") + b'"tick":"dup","outcome":"error"}'
    elif damage == "utf8":
        raw = raw[:-1] + (b"," if len(raw) > 2 else b"") + b'"o":"\xc3"}'
    elif damage == "utf8-read" and b'"episode":"' in raw:
        raw = raw.replace(b'"episode":"', b'"episode":"\xff', 1)
    elif damage == "torn":
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


class Rejects:
    """A decoder that takes no line (the path behind it then summarizes every line)."""

    @staticmethod
    def decode(_raw: bytes) -> Any:
        raise msgspec.ValidationError("the lenient way only")


def summarize(batches: list[list[bytes]]) -> tuple[Any, ...]:
    s = _Summaries()
    first = 0
    for batch in batches:
        _summarize_batch(s, first, batch)
        first += len(batch)
    return key_of(s)


def batches_of(all_lines: list[bytes], cuts: list[int]) -> list[list[bytes]]:
    bounds = sorted({c for c in cuts if 0 < c < len(all_lines)} | {0, len(all_lines)})
    return [all_lines[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(all_lines=st.lists(lines(), min_size=1, max_size=50), cuts=st.lists(st.integers(0, 50), max_size=3))
@example(  # numbers out of range where the lenient decoder decodes (and rejects the line), the strict one need not
    all_lines=[
        b'{"kind":"tick","action":{"big":1e400,"tool":"run_tests"}}',
        b'{"kind":"tick","episode":"e1","ts":1e400}',
        b'{"kind":"episode_end","episode":"e1","context":[1e999],"outcome":"death"}',
        b'{"kind":"tick","episode":"e1","tick":1,"x":1e400}',
        b'{"kind":"tick","episode":"e1","outcome":[1]}',  # an unhashable outcome (it used to stop the pass)
        b'{"kind":"episode_end","episode":"e1","outcome":{"a":1}}',
        b'{"kind":"tick","episode":"e1","chain_id":1' + b"0" * 400 + b"}",  # beyond a double (orjson refuses it)
    ],
    cuts=[],
)
@example(
    all_lines=[  # beyond 64 bits orjson reads a float, msgspec an int: the same row either way
        b'{"kind":"tick","episode":1180591620717411303424}',
        b'{"kind":"tick","episode":-9223372036854775809,"chain_id":18446744073709551616}',
        b'{"kind":"tick","episode":"e1","chain_id":-9223372036854775808}',
    ],
    cuts=[1],
)
def test_strict_path_equals_the_lenient_path(all_lines: list[bytes], cuts: list[int]) -> None:
    batches = batches_of(all_lines, cuts)
    fast = summarize(batches)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(summary_module, "fast_decoder_strict", Rejects)
        lenient = summarize(batches)
        m.setattr(summary_module, "fast_decoder", Rejects)
        plain = summarize(batches)  # every line through orjson (differs only for 1e400 in a skipped field)
    assert fast == lenient
    if not any(b"1e400" in raw for raw in all_lines):
        assert fast == plain


def test_the_strict_decoder_takes_the_common_tick_and_rejects_odd_types() -> None:
    tick = {"kind": "tick", "episode": "e1", "tick": 3, "latency_s": 0.5, "context_chars": 900, "outcome": "ok"}
    decode = summary_records.strict_decoder.decode
    assert decode(orjson.dumps({**tick, "action": {"tool": "x"}, "progress": True})).tick == 3
    for odd in ({"tick": True}, {"tick": 2**31}, {"context_chars": -1}, {"episode": 7}, {"kind": "weird"}):
        with pytest.raises(msgspec.ValidationError):
            decode(orjson.dumps({**tick, **odd}))


def test_cached_verbs_and_flags_keep_runs_exact() -> None:
    """Thrash and deadlock marks from the caches, with the caches cleared between batches (as when they are full)."""
    fail = {"kind": "tick", "episode": "e1", "outcome": "error", "action": {"tool": "bash", "args": {"command": "ls"}}}
    ok = {**fail, "outcome": "ok", "action": {"tool": "bash", "args": {"command": "ls -l"}}}
    locked = {**fail, "error_class": "NotFound"}
    recs = [fail, fail, fail, ok, fail, locked, locked, locked] + [{**ok, "progress": False}] * 8
    all_lines = [orjson.dumps(r) for r in recs]
    s = _Summaries()
    for i, raw in enumerate(all_lines):
        summary_records._actions.clear()
        summary_records._ticks.clear()
        _summarize_batch(s, i, [raw])
    assert key_of(s) == summarize([all_lines])
    flags = list(s.flags)
    assert flags[2] & FLAG_THRASH and not flags[4] & FLAG_THRASH, "ls -l is the same verb: the run ended"
    assert flags[7] & FLAG_DEADLOCK and flags[15] & FLAG_DEADLOCK
    with pytest.MonkeyPatch.context() as m:
        m.setattr(summary_module, "fast_decoder_strict", Rejects)
        assert summarize([all_lines]) == key_of(s)
