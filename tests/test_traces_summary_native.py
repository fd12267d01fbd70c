"""The summary's C loop (``_summary_native``) gives, column by column and state by state, exactly what the Python loop
gives (``summary._summarize_python`` and the lenient path behind it), on generated lines: the strict tests' lines,
and the same lines re-spelled the ways JSON allows and the C loop must read or hand back (white space, escapes,
exponents, big and negative numbers, unknown and repeated fields, nesting, surrogates, control characters)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.traces import summary as summary_module
from pipeline.traces import summary_native, summary_records
from pipeline.traces.summary import _summarize_batch
from pipeline.traces.summary_columns import FLAG_DEADLOCK, FLAG_THRASH, _Summaries
from pipeline.traces.summary_names import NameStore
from tests.test_traces_summary_split import key_of
from tests.test_traces_summary_strict import batches_of
from tests.test_traces_summary_strict import lines as strict_lines

NATIVE = summary_native.load()


def test_the_c_loop_is_built_and_used() -> None:
    """The install builds the extension (a C compiler is part of the set-up); it is off only when asked."""
    if os.environ.get(summary_native.ENV) == "0":
        pytest.skip("PHASEF_SUMMARY_NATIVE=0: the Python loop was asked for")
    assert NATIVE is not None, "pipeline/traces/_summary_native.c was not built: run `make setup` again"
    assert summary_module.native is NATIVE


needs_native = pytest.mark.skipif(NATIVE is None, reason="the C loop is not built (see the test above)")


def summarize(
    batches: list[list[bytes]], *, native: bool, transient: bool = False, blocks: bool = False
) -> tuple[Any, ...]:
    """The summary of ``batches``; ``blocks``: each batch given as one block of lines (as the workers read them)."""
    summary_records._actions.clear()
    summary_records._ticks.clear()
    summary_records._tick_bytes.clear()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(summary_module, "native", NATIVE if native else None)
        s = _Summaries(transient=transient)
        first = 0
        for batch in batches:
            assert _summarize_batch(s, first, b"\n".join(batch) if blocks else batch) == len(batch)
            first += len(batch)
    return key_of(s)


SPACES = st.sampled_from(["", "", "", " ", "\t", "\r", " \r\n ", "  "])
ODD_VALUES = st.sampled_from(
    [
        "1e5",
        "1E-3",
        "-0",
        "-0.0",
        "1.0",
        "0.1e1",
        "123456789012345678",
        "1234567890123456789",
        "12345678901234567890123",
        "1e400",
        "-1e400",
        "1e-400",
        "0.30000000000000004",
        "3.141592653589793238",
        "1" + "0" * 310 + ".5",
        "01",
        "1.",
        ".5",
        "+1",
        "NaN",
        "Infinity",
        "tru",
        "nul",
        '"a\\u00e9b"',
        '"\\ud83d\\ude00"',
        '"\\ud800"',
        '"\\udc00x"',
        '"\\x"',
        '"tab\\there"',
        '"\\/"',
        '"raw\ttab"',
        '"\u00e9t\u00e9"',
        "[]",
        "{}",
        '[1,[2,[3,{"a":[{}]}]]]',
        "[" * 70 + "]" * 70,
        '{"k":1,"k":2}',
        "[1,]",
        '{"a":1,}',
        '{"a" 1}',
    ]
)
FIELD_NAMES = [
    "kind",
    "episode",
    "tick",
    "latency_s",
    "context_chars",
    "action",
    "schema_error",
    "outcome",
    "error_class",
    "trap",
    "chain_id",
    "chain_role",
    "recovery",
    "progress",
    "ts",
    "observation",
    "actor",
    "raw_output",
    "k\\u0069nd",
]


@st.composite
def respelled(draw: st.DrawFn) -> bytes:
    """A strict test line, then maybe spelled another way: spaces between tokens, a value of one field replaced by
    raw JSON text (valid or not), an escaped letter in the kind or the episode, a field given twice."""
    raw = draw(strict_lines())
    try:
        rec = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw
    if not isinstance(rec, dict):
        return raw
    if draw(st.booleans()):
        rec["latency_s"] = draw(
            st.one_of(
                st.floats(allow_nan=False, allow_infinity=False),
                st.floats(0, 100),
                st.integers(-(10**20), 10**20),
                st.decimals(places=6, min_value=-1000, max_value=1000, allow_nan=False).map(float),
            )
        )
    parts = [(json.dumps(k), json.dumps(v, separators=(",", ":"))) for k, v in rec.items()]
    if parts and draw(st.booleans()):  # a value replaced by raw JSON text
        at = draw(st.integers(0, len(parts) - 1))
        parts[at] = (parts[at][0], draw(ODD_VALUES))
    if draw(st.booleans()):  # a field the summary may or may not read, with an odd value
        name = draw(st.sampled_from(FIELD_NAMES))
        parts.insert(draw(st.integers(0, len(parts))), (f'"{name}"', draw(ODD_VALUES)))
    if parts and draw(st.integers(0, 6)) == 0:  # a field given twice
        parts.append(parts[draw(st.integers(0, len(parts) - 1))])
    if draw(st.integers(0, 5)) == 0:
        parts = [(k.replace("tick", "t\\u0069ck"), v.replace("e1", "\\u00651")) for k, v in parts]
    ws = [draw(SPACES) for _ in range(4)]
    body = f"{ws[0]},{ws[1]}".join(f"{k}{ws[2]}:{ws[3]}{v}" for k, v in parts)
    return f"{draw(SPACES)}{{{ws[1]}{body}{ws[2]}}}{draw(SPACES)}".encode()


@needs_native
@settings(max_examples=500, deadline=None)
@given(
    all_lines=st.lists(st.one_of(strict_lines(), respelled()), min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=3),
    transient=st.booleans(),
)
@example(
    all_lines=[
        b'{"kind":"tick","episode":"e1","tick":1,"latency_s":1' + b"0" * 400 + b"}",  # beyond a double: unknown
        b'{"kind":"tick","episode":"e1","tick":2,"latency_s":0.1,"x":1e400}',
        b' {"kind" : "tick" , "episode":"e1","progress":false}\r',
        b'{"kind":"tick","episode":"e\\u0031","progress":false}',
        b'{"kind":"tick","episode":"e1","tick":70000,"context_chars":70000,"chain_id":"c1"}',
        b'{"kind":"episode_end","episode":"e1","outcome":"death","action":{"tool":"x"}}',
    ],
    cuts=[3],
    transient=False,
)
def test_the_c_loop_equals_the_python_loop(all_lines: list[bytes], cuts: list[int], transient: bool) -> None:
    batches = batches_of(all_lines, cuts)
    python = summarize(batches, native=False, transient=transient)
    assert summarize(batches, native=True, transient=transient) == python
    if not any(b"\n" in raw for raw in all_lines):  # (a line of a file holds no newline)
        assert summarize(batches, native=True, transient=transient, blocks=True) == python
        assert summarize(batches, native=False, transient=transient, blocks=True) == python


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A line with bytes put in, taken out or changed at random places (torn and garbled lines, stray quotes,
    backslashes, control bytes, bytes of UTF-8 sequences)."""
    raw = bytearray(draw(st.one_of(strict_lines(), respelled())))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        byte = draw(st.sampled_from(b'"\\{}[]:,0-e.\x00\x01\x1f \t\x7f\xc3\xa9\xffntfu'))
        what = draw(st.sampled_from(["put", "cut", "set"]))
        if what == "put" or at == len(raw):
            raw.insert(at, byte)
        elif what == "cut":
            del raw[at]
        else:
            raw[at] = byte
    return bytes(raw)


@needs_native
@settings(max_examples=400, deadline=None)
@given(all_lines=st.lists(st.one_of(damaged(), st.binary(max_size=40)), min_size=1, max_size=30))
def test_the_c_loop_equals_the_python_loop_on_damaged_lines(all_lines: list[bytes]) -> None:
    lines = [raw.replace(b"\n", b" ") for raw in all_lines]  # (a line of a file holds no newline)
    python = summarize([lines], native=False)
    assert summarize([lines], native=True) == python
    assert summarize([lines], native=True, blocks=True) == python


EDGE_LINES = [
    # each one a way the C loop must hand a line to the Python path, or read it exactly as msgspec does
    b'{"kind":"tick","episode":"e1","observation":"\\x"}',  # an invalid escape in a value not read
    b'{"kind":"tick","episode":"e1","actor":"\\q"}',  # the same in a field not declared
    b'{"kind":"tick","episode":"e1","observation":"\\ud800"}',  # a lone surrogate, escaped
    b'{"kind":"tick","episode":"e1","observation":"\\ud83d\\ude00"}',  # a pair
    b'{"kind":"tick","episode":"e1","observation":"a\tb"}',  # a raw control character in a string
    b'{"kind":"tick","episode":"e1","observation":"\\u00e9\\n\\/"}',  # good escapes
    b'{"kind":"tick","episode":"e1","x":1e400}',
    b'{"kind":"tick","episode":"e1","x":-1e400}',
    b'{"kind":"tick","episode":"e1","x":1e-400}',
    b'{"kind":"tick","episode":"e1","ts":1e400}',  # a number out of range in a value the decoder decodes
    b'{"kind":"tick","episode":"e1","latency_s":1e400}',
    b'{"kind":"tick","episode":"e1","latency_s":1e-400}',
    b'{"kind":"tick","episode":"e1","ts":12345678901234567890}',
    b'{"kind":"tick","episode":"e1","latency_s":123456789012345678}',
    b'{"kind":"tick","episode":"e1","latency_s":0.1234567890123456789}',
    b'{"kind":"tick","episode":"e1","latency_s":2.5e-3}',
    b'{"kind":"tick","episode":"e1","latency_s":-0.0}',
    b'{"kind":"tick","episode":"e1","tick":3.0}',
    b'{"kind":"tick","episode":"e1","tick":2147483648}',
    b'{"kind":"tick","episode":"e1","tick":-2147483648}',
    b'{"kind":"tick","episode":"e1","context_chars":-1}',
    b'{"kind":"tick","episode":"e1","context_chars":0,"context_chars":5}',
    b'{"kind":"tick","kind":"tick","episode":"e1"}',
    b'{"kind":"t\\u0069ck","episode":"e1"}',
    b'{"k\\u0069nd":"tick","episode":"e1"}',
    b'{"kind":"tick","episode":"e\\u0031","progress":false}',
    b'{"kind":"tick","episode":7}',
    b'{"kind":"tick","episode":"e1","progress":"yes"}',
    b'{"kind":"tick","episode":"e1","recovery":1}',
    b'{"kind":"tick","episode":"e1","x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}',
    b'{"kind":"tick","episode":"e1","x":[1,]}',
    b'{"kind":"tick","episode":"e1","x":01}',
    b'{"kind":"tick","episode":"e1"} x',
    b'{"kind":"tick","episode":"e1",}',
    b' \t{ "kind" : "tick" , "episode" : "e1" } \r',
    b'{"kind":"tick","episode":"e1","action":{"tool":"x","a":1e400}}',
    b'{"kind":"episode_end","episode":"e1","outcome":"death","action":{"tool":"x","a":1e400}}',
    b'{"kind":"episode_start","episode":"e1"}',
    b'{"kind":"episode_end","episode":"e1","outcome":"aborted"}',
    b'{"kind":"weird","episode":"e1"}',
    b"{}",
    b"[]",
    b"",
]


@needs_native
def test_each_way_a_line_can_go_gives_the_python_loop_s_row() -> None:
    for raw in EDGE_LINES:
        assert summarize([[raw]], native=True) == summarize([[raw]], native=False), raw
    assert summarize([EDGE_LINES], native=True, blocks=True) == summarize([EDGE_LINES], native=False)


@needs_native
def test_runs_marks_and_chains_through_the_c_loop_with_caches_cleared() -> None:
    """Thrash, deadlock, no-progress and chains across batches, with every cache emptied at each insertion."""
    fail = {"kind": "tick", "episode": "e1", "outcome": "error", "action": {"tool": "bash", "args": {"command": "ls"}}}
    ok = {**fail, "outcome": "ok", "action": {"tool": "bash", "args": {"command": "ls -l"}}}
    locked = {**fail, "error_class": "NotFound", "chain_id": "c1", "chain_role": "failure"}
    other = {**ok, "episode": "e2", "chain_id": "c1", "progress": False}
    recs = [fail, fail, fail, ok, fail, locked, other, locked, locked] + [{**ok, "progress": False}] * 8
    all_lines = [orjson.dumps(r) for r in recs]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(summary_records, "CACHE_MAX", 1)
        for cuts in ([], [1, 5, 9], list(range(len(all_lines)))):
            batches = batches_of(all_lines, cuts)
            native = summarize(batches, native=True)
            assert native == summarize(batches, native=False)
    flags = [int.from_bytes(native[1][2 * i : 2 * i + 2], "little") for i in range(len(recs))]
    assert flags[2] & FLAG_THRASH and not flags[4] & FLAG_THRASH, "ls -l is the same verb: the run ended"
    assert flags[8] & FLAG_DEADLOCK and flags[16] & FLAG_DEADLOCK


def handed_to_python(lines: list[bytes]) -> list[int]:
    """The lines of ``lines`` the C loop gives up to the Python loop (by their index), the summary run by blocks."""
    handed: list[int] = []
    python_rows = summary_module._summarize_python
    with pytest.MonkeyPatch.context() as m:
        m.setattr(summary_module, "_summarize_python", lambda s, i, raw: handed.append(i) or python_rows(s, i, raw))
        summarize([lines], native=True, blocks=True)
    return handed


@needs_native
def test_escapes_at_every_place_of_a_16_byte_window_read_as_the_python_loop_reads_them() -> None:
    """The C loop takes a string's escapes from the mask of 16 bytes at a time: an escape before, across and after
    a window's edge, several in one window, one that ends the line, bad ones (an unknown letter, a lone surrogate, a
    control character after an escape), in a field the summary skips and in one it reads."""
    escapes = ['\\"', "\\\\", "\\n", "\\u00e9", "\\ud800", "\\x", "\t", '\\"\\"\\n\\\\', "\\u12"]
    lines = []
    for at in range(0, 22):
        for escape in escapes:
            text = "a" * at + escape + "b" * (21 - at)
            lines.append(f'{{"kind":"tick","episode":"e1","tick":{at},"observation":"{text}","outcome":"ok"}}'.encode())
            lines.append(f'{{"kind":"tick","episode":"e{text}","tick":{at}}}'.encode())
            lines.append(f'{{"kind":"tick","episode":"e1","observation":"{"x" * at}{escape}'.encode())  # cut short
    python = summarize([lines], native=False)
    assert summarize([lines], native=True) == python
    assert summarize([lines], native=True, blocks=True) == python
    # and the well-formed ones are the C loop's own: none handed to the Python path (a scan that lost its place
    # after an escape would give them up, and the results above would still agree)
    good = [raw for raw in lines[0::3] if any(e.encode() in raw for e in escapes[:4] + escapes[7:8])]
    assert len(good) == 22 * 5
    assert handed_to_python(good) == []


@needs_native
def test_numbers_of_every_length_and_what_ends_them_read_as_the_python_loop_reads_them() -> None:
    """The C loop finds where a run of digits ends eight bytes at a time: numbers of 1 to 24 digits (integer part and
    fraction), at every place of an 8-byte word, in fields the summary reads (whole and decimal) and skips, ended by
    what ends a number and by bytes it must not take for digits (those next to '0'-'9' in ASCII, and UTF-8)."""
    ends = [",", "}", " ,", ":", "/", ";", "?", "@", "A", "é", "\x7f", "e5", "E-2", ".", "x"]
    lines, good = [], []
    for digits in range(1, 25):
        number = "1" + "".join(str((d * 7 + 1) % 10) for d in range(1, digits))
        for pad in range(8):
            lead = '"kind":"tick","episode":"e' + "1" * pad + '"'
            for end in ends:
                tail = end if end in (",", "}", " ,") else end + "}"
                rest = "" if tail.endswith("}") else '"outcome":"ok"}'
                for field, most in (("tick", 9), ("context_chars", 9), ("latency_s", 18), ("ts", 18), ("x", 18)):
                    lines.append(f'{{{lead},"{field}":{number}{tail}{rest}'.encode())
                    if end in (",", "}", " ,") and digits <= most:
                        good.append(lines[-1])
                for value in (f"0.{number}", f"-{number}.{number[::-1]}"):
                    lines.append(f'{{{lead},"ts":{value}{tail}{rest}'.encode())
                    if end in (",", "}", " ,"):
                        good.append(lines[-1])
    python = summarize([lines], native=False)
    assert summarize([lines], native=True) == python
    assert summarize([lines], native=True, blocks=True) == python
    # the well-formed ones are the C loop's own (a digit run that ended one byte late would give them up)
    assert len(good) > 1000
    assert handed_to_python(good) == []


@needs_native
def test_keys_like_the_line_before_s_are_read_as_their_own() -> None:
    """The C loop takes a key at the place of the line before's key as that key when its bytes and closing quote
    are the same: a longer or shorter key there, one escaped, one given twice, a field moved, a line ending soon
    after the key, keys of 16 bytes or more."""
    lines = [
        b'{"kind":"tick","episode":"e1","tick":1,"outcome":"error","action":{"tool":"x"},"progress":false}',
        b'{"kind":"tick","episode":"e1","ticks":2,"outcome":"error","action":{"tool":"x"},"progress":false}',
        b'{"kind":"tick","episode":"e1","tic":3,"outcome":"error","action":{"tool":"x"},"progress":false}',
        b'{"kind":"tick","episode":"e1","t\\u0069ck":4,"outcome":"error","action":{"tool":"x"}}',
        b'{"kind":"tick","episode":"e1","tick":5,"tick":6}',
        b'{"kind":"tick","tick":7,"episode":"e1","outcome":"error","action":{"tool":"x"},"progress":false}',
        b'{"kind":"tick","tick":8,"episode":"e1","outcome":"ok","progress":true}',
        b'{"kind":"tick","tick":9,"episode":"e1","outcome":"ok","progress":true,"completion_tokens_x":1}',
        b'{"kind":"tick","tick":9,"episode":"e1","outcome":"ok","progress":true,"completion_tokens_x":1}',
        b'{"kind":"tick","tick":9,"episode":"e1","outcome":"ok","progress":true,"completion_tokens_y":1}',
        b'{"kind":"tick","tick":10}',
        b'{"kind":"tick","tick":11,"kind":"tick"}',
        b'{"kind":"episode_end","episode":"e1","outcome":"death"}',
        b'{"kind":"tick","episode":"e1","tick":12}',
    ]
    for cuts in ([], [3, 8], list(range(len(lines)))):
        batches = batches_of(lines, cuts)
        python = summarize(batches, native=False)
        assert summarize(batches, native=True) == python, cuts
        assert summarize(batches, native=True, blocks=True) == python, cuts


@needs_native
def test_open_runs_of_verbs_in_other_scripts_end_as_in_the_python_loop() -> None:
    """The C loop keeps an episode's open runs in its own array and compares verbs and tools by their code points:
    a verb wider than its tool's name (an emoji in the command), a tool name outside ASCII, several runs open at
    once, an invalid action's run ended by any success, and the state written back between batches."""

    def tick(action: object, outcome: str = "error", **more: object) -> bytes:
        return orjson.dumps({"kind": "tick", "episode": "e1", "outcome": outcome, "action": action, **more})

    emoji = {"tool": "bash", "args": {"command": "\U0001f600x --v"}}
    recs = [
        tick(emoji),
        tick({"tool": "\u00e9dit", "args": {"path": "a"}}),
        tick("not a dict"),
        tick(emoji, error_class="NotFound"),
        tick(emoji),
        tick(emoji),  # thrash: the third of the same verb and class
        tick({"tool": "bash", "args": {"command": "ls"}}, "ok"),  # same tool, other verb: ends the invalid run only
        tick(emoji),  # the emoji run goes on: the fourth
        tick({"tool": "bash", "args": {"command": "\U0001f600x"}}, "ok"),  # same verb: its runs end
        tick(emoji),
        tick({"tool": "\u00e9dit", "args": {"path": "b"}}),
        tick({"tool": "\u00e9dit"}),
        tick({"tool": "\u00e9dit"}, "ok"),
        tick({"tool": "\u00e9dit"}),
    ]
    for cuts in ([], [3, 7, 11], list(range(len(recs)))):
        batches = batches_of(recs, cuts)
        native = summarize(batches, native=True)
        assert native == summarize(batches, native=False), cuts
    flags = [int.from_bytes(native[1][2 * i : 2 * i + 2], "little") for i in range(len(recs))]
    marked = [i for i, f in enumerate(flags) if f & (FLAG_THRASH | FLAG_DEADLOCK)]
    assert marked == [5, 7, 11], marked
    assert native[-1] == {0: ({"bash:\U0001f600x": {"Error": 1}, "\u00e9dit": {"Error": 1}}, 0)}


def test_a_latency_beyond_a_double_reads_as_unknown_on_every_path() -> None:
    """It used to stop the summary with an OverflowError (the column could not take it)."""
    line = b'{"kind":"tick","episode":"e1","tick":1,"latency_s":1' + b"0" * 400 + b"}"
    for native in (True, False) if NATIVE is not None else (False,):
        for batch in ([line], [line, b"\xff"]):  # strict, and lenient (a batch that is not UTF-8)
            s = _Summaries()
            with pytest.MonkeyPatch.context() as m:
                m.setattr(summary_module, "native", NATIVE if native else None)
                _summarize_batch(s, 0, batch)
            assert math.isnan(s.latency[0])
            if len(batch) == 1:
                assert s.tick[0] == 1  # (orjson, behind a batch that is not UTF-8, refuses the number: a bad line)


@needs_native
def test_narrow_and_all_ascii() -> None:
    assert NATIVE is not None
    from array import array

    wide = array("i", [0, -1, 32767, -32768]).tobytes()
    assert array("h", NATIVE.narrow(wide, "h")).tolist() == [0, -1, 32767, -32768]
    assert array("H", NATIVE.narrow(array("i", [0, 65535]).tobytes(), "H")).tolist() == [0, 65535]
    with pytest.raises(ValueError):
        NATIVE.narrow(b"abc", "h")
    assert NATIVE.all_ascii([b"", b"abcdefghij" * 3, b"{}"])
    assert not NATIVE.all_ascii([b"abcdefgh", b"abcdefghi\xc3\xa9"])
    assert not NATIVE.all_ascii([b"\x80"])


@needs_native
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000).map(lambda b: b.replace(b"\x00", b"\n")), base=st.integers(0, 2**40))
def test_newline_ends_are_numpys(data: bytes, base: int) -> None:
    """The index's newline scan by ``memchr`` gives what numpy's compare-and-nonzero gives."""
    import numpy as np

    from pipeline.traces import index_scan

    assert NATIVE is not None
    expected = (np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + base + 1).astype(np.int64)
    assert np.frombuffer(NATIVE.newline_ends(data, base), dtype=np.int64).tolist() == expected.tolist()
    assert index_scan._newline_ends(np, data, base).tolist() == expected.tolist()


@needs_native
def test_an_error_in_python_code_the_c_loop_calls_comes_out_as_raised() -> None:
    """An exception from a cache's Python side or from the Python path stops the batch with that exception."""
    good = [orjson.dumps({"kind": "tick", "episode": "e1", "tick": 1, "outcome": "odd-one"})]
    odd = [b'{"kind":"tick","unknown":1e400}']

    def broken(*_args: Any) -> Any:
        raise RuntimeError("broken on purpose")

    for name, lines in (("tick_flags", good), ("_summarize_python", odd)):
        summary_records._tick_bytes.clear()
        summary_records._ticks.clear()
        with pytest.MonkeyPatch.context() as m:
            m.setattr(summary_native if name == "tick_flags" else summary_module, name, broken)
            with pytest.raises(RuntimeError, match="broken on purpose"):
                _summarize_batch(_Summaries(), 0, lines)
        s = _Summaries()
        assert _summarize_batch(s, 0, lines) == 1 and len(s) == 1, "the next batch is summarized as usual"


@needs_native
def test_a_worker_summary_numbers_its_chains_in_c_as_chain_number_does() -> None:
    """A summary's chains are numbered by the C loop itself (``summary_native._chains_here``), not by
    ``chain_number``, whether they are a transient summary's ``ListNames`` or the viewer's ``NameStore``: the same
    names, numbers, first and last lines and episodes, over batches (a chain met again in a later batch), for lines
    without an episode, non-ASCII names and names longer than the C loop's own buffer."""
    long_episode, long_chain = "é" * 200, "c" * 300

    def tick(episode: str | None, chain: str, t: int) -> bytes:
        fields: dict[str, Any] = {"kind": "tick", "tick": t, "chain_id": chain, "outcome": "ok"}
        if episode is not None:
            fields["episode"] = episode
        return orjson.dumps(fields)

    lines = [
        tick("e1", "c1", 0),
        tick("e1", "c2", 1),
        tick(None, "c1", 2),
        tick(long_episode, long_chain, 3),
        tick("e1", "c1", 4),
        tick("ë2", "c1", 5),
        tick(long_episode, long_chain, 6),
        tick(None, "c1", 7),
    ]
    batches = [lines[:3], lines[3:5], lines[5:]]
    assert summary_native._chains_here(_Summaries(transient=True)) is not None
    viewer = summary_native._chains_here(_Summaries())
    assert viewer is not None and isinstance(viewer[0], NameStore) and viewer[1] is None
    for blocks in (False, True):
        in_c = summarize(batches, native=True, transient=True, blocks=blocks)
        assert in_c == summarize(batches, native=False, transient=True, blocks=blocks)
        assert in_c == summarize(batches, native=True, transient=False, blocks=blocks)

    def asked(*args: Any) -> int:
        raise AssertionError(f"chain_number was asked: {args}")

    for transient in (True, False):
        s = _Summaries(transient=transient)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(summary_module, "native", NATIVE)
            m.setattr(summary_module, "chain_number", asked)  # (every line here is one the C loop takes)
            first = 0
            for batch in batches:
                first += _summarize_batch(s, first, batch)
        names = ["e1\x1fc1", "e1\x1fc2", "\x1fc1", f"{long_episode}\x1f{long_chain}", "ë2\x1fc1"]
        assert list(s.chains.names) == names
        assert [s.chains.find(name) for name in names] == [0, 1, 2, 3, 4]
        assert list(s.chain_lines.first) == [0, 1, 2, 3, 5]
        assert list(s.chain_lines.last) == [4, 1, 7, 6, 5]
        assert list(s.chain_episode) == [0, 0, -1, 1, 2]


CHAIN_NAMES = st.text(alphabet=st.sampled_from("abé\x1f0-"), min_size=0, max_size=12)


@needs_native
@settings(max_examples=60, deadline=None)
@given(
    known=st.lists(CHAIN_NAMES, max_size=30),
    ticks=st.lists(st.tuples(st.sampled_from(["e1", "e2", "ë3", None]), CHAIN_NAMES), min_size=1, max_size=60),
    cut=st.integers(min_value=0, max_value=60),
)
def test_chains_interned_into_a_name_store_in_c_are_those_python_interns(
    known: list[str], ticks: list[tuple[str | None, str]], cut: int
) -> None:
    """The C loop's interning into a ``NameStore`` (``store_intern``) leaves the store as its own ``intern`` would:
    the same names and numbers, the same bytes, hash tags and table (so the store finds each name afterwards), over
    names known before, chains met again in a later batch, a table that grows, and non-ASCII names (which the store's
    own code interns)."""
    lines = []
    for t, (episode, chain) in enumerate(ticks):
        fields: dict[str, Any] = {"kind": "tick", "tick": t, "chain_id": chain, "outcome": "ok"}
        if episode is not None:
            fields["episode"] = episode
        lines.append(orjson.dumps(fields))
    batches = [lines[:cut], lines[cut:]]
    stores = []
    for native in (True, False):
        s = _Summaries()
        for name in known:
            s.chains.intern(name)
            s.chain_lines.new(-1)
            s.chain_episode.append(-1)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(summary_module, "native", NATIVE if native else None)
            first = 0
            for batch in batches:
                first += _summarize_batch(s, first, batch)
        assert isinstance(s.chains, NameStore)
        stores.append((s.chains, list(s.chain_lines.first), list(s.chain_lines.last), list(s.chain_episode)))
    (in_c, *c_lines), (in_python, *python_lines) = stores
    assert in_c == in_python and c_lines == python_lines
    assert in_c.tags() == in_python.tags() and in_c._table == in_python._table
    assert all(in_c.find(name) == number for number, name in enumerate(in_python))


@needs_native
def test_a_build_of_another_version_is_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A C module built from an older source (a pull without ``make setup``) would take other arguments: it is not
    used, the Python loop is (the same results), and the user is told once how to build it again."""
    from pipeline.traces import _summary_native

    assert _summary_native.API == summary_native.API  # (the build under test is this source's)
    monkeypatch.setattr(_summary_native, "API", summary_native.API - 1)
    monkeypatch.setattr(summary_native, "_stale_told", [])
    with caplog.at_level("WARNING"):
        assert summary_native.load() is None
        assert summary_native.load() is None
    told = [r for r in caplog.records if "make setup" in r.getMessage()]
    assert len(told) == 1 and "older source" in told[0].getMessage()
    monkeypatch.delattr(_summary_native, "API")
    assert summary_native.load() is None
    monkeypatch.undo()
    assert summary_native.load() is NATIVE
