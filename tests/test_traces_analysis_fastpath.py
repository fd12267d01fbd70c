"""The batch path of ``phasef trace stats`` (``TraceAnalyzer.feed_lines``: a batch of lines decoded and analyzed in
one loop, the state of the last episode carried from tick to tick and batch to batch) gives exactly what the
record-by-record path gives (``feed``: the same loop, one record at a time), on random dirty traces: valid ticks of
interleaved episodes, chain marks, failures, traps, records with wrong types, bad JSON, JSON that is not an object,
keywords inside strings, invalid UTF-8, blank lines and a torn last line."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.traces.analysis import _stream
from pipeline.traces.analyzer import TraceAnalyzer
from pipeline.traces.reader import DEFAULT_MAX_LINE_BYTES

EPISODES = ["e1", "e2", "e3"]
ACTIONS = [
    {"tool": "bash", "args": {"command": "python3 a.py"}},
    {"tool": "bash", "args": {"command": "ls"}},
    {"act": "read", "arg": "src/a.py"},
    {"act": "check", "arg": "c.py"},
    {"tool": "str_replace_editor", "command": "view"},
    {"act": 5, "name": "answer"},
    {},
]
TRICKY_STRINGS = ['"kind":"tick"', '{"kind":"episode_end"}', "error", "\n", "é", "\\", '","tick":3,"', ""]


@st.composite
def tick(draw: st.DrawFn) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "kind": "tick",
        "episode": draw(st.sampled_from(["e1", "e1", "e1", *EPISODES])),
        "ts": draw(st.sampled_from([1.5, 2, 3.25])),
        "tick": draw(st.integers(0, 12)),
        "outcome": draw(st.sampled_from(["ok", "ok", "ok", "error", "timeout", "death", "noop"])),
    }
    if draw(st.booleans()):
        rec["run_id"] = draw(st.sampled_from(["r1", "r2", ""]))
    optional: dict[str, Any] = {
        # mostly two actions, so that A/B/A/B alternations (oscillations) happen
        "action": st.sampled_from(ACTIONS[:2]) | st.sampled_from(ACTIONS) | st.sampled_from([None, "bash", 3]),
        "context_chars": st.integers(0, 5000) | st.sampled_from([None, "12", 1.5, True]),
        "context": st.just([{"role": "user", "content": "abc"}, {"content": 7}]),
        "progress": st.booleans() | st.sampled_from([None, 1]),
        "observation": st.sampled_from(TRICKY_STRINGS),
        "error_class": st.sampled_from(["NotFound", "Timeout", "SchemaViolation", "", None, 3]),
        "chain_id": st.sampled_from(["c1", "c2", 7]),
        "chain_role": st.sampled_from(["failure", "attempt", "recovered", "death", "bogus", None]),
        "trap": st.sampled_from(["hang", "flaky", "", None, 2]),
        "recovery": st.sampled_from(["reflex", "model", None]),
        "ts_estimated": st.booleans(),
        "schema": st.sampled_from(["phasef.dirty_trace/1", "other/9"]),
        "error": st.sampled_from(["no such file", "  ", None]),
    }
    keys = draw(st.lists(st.sampled_from(sorted(optional)), max_size=7, unique=True))
    for key in ["action", "context_chars", *keys] if draw(st.booleans()) else keys:
        rec[key] = draw(optional[key])
    if draw(st.integers(0, 9)) == 0:  # a field of the wrong type somewhere
        rec[draw(st.sampled_from(["tick", "ts", "episode", "outcome"]))] = draw(
            st.sampled_from([None, "3", -1, True, [], 2.5, ""])
        )
    return rec


@st.composite
def boundary(draw: st.DrawFn) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "kind": draw(st.sampled_from(["episode_start", "episode_end"])),
        "episode": draw(st.sampled_from(EPISODES)),
        "ts": 1.0,
    }
    if rec["kind"] == "episode_end":
        rec["outcome"] = draw(st.sampled_from(["success", "death", "timeout"]))
        rec["reason"] = draw(st.sampled_from(["killed", None]))
    else:
        rec["context_window"] = draw(st.sampled_from([None, 2, -1]))
    return rec


def _line(draw: st.DrawFn) -> bytes:
    choice = draw(st.integers(0, 19))
    if choice < 12:
        return orjson.dumps(draw(tick()))
    if choice < 14:
        return orjson.dumps(draw(boundary()))
    return draw(
        st.sampled_from(
            [
                b"",
                b"   ",
                b"not json",
                b'{"kind":"tick",',
                b"[1, 2]",
                b'"tick"',
                b"null",
                b'{"kind":"unknown","episode":"e1"}',
                b'{"kind":3}',
                b'{"kind":"tick","episode":"e1","observation":"\xff\xfe","tick":1,"ts":1,"outcome":"ok"}',
                b'{"kind":"tick","episode":"e1","tick":1,"ts":1,"outcome":"ok","raw":"\xc3("}',
                b'{"kind":"tick","episode":"e2","tick":2,"ts":1,"outcome":"ok"} {"x":1}',
                b'{"kind":"tick","episode":"e2","tick":2,"ts":1,"outcome":"ok","kind":"episode_end"}',
                '{"kind":"tick","episode":"é","tick":4,"ts":2,"outcome":"error","observation":"ü"}'.encode(),
            ]
        )
    )


@st.composite
def traces(draw: st.DrawFn) -> bytes:
    lines = [_line(draw) for _ in range(draw(st.integers(0, 60)))]
    data = b"\n".join(lines)
    if lines and draw(st.booleans()):
        data += b"\n"  # else the last line has no newline: complete or torn
    if draw(st.booleans()):
        data += draw(st.sampled_from([b'{"kind":"tick","epis', b'{"kind":"episode_end","episode":"e1","ts":1}']))
    return data


def _analysis(path: Path, *, fast: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    analyzer = TraceAnalyzer(str(path), deadlock_window=3, thrash_min=2)
    sha = _stream(path, analyzer, DEFAULT_MAX_LINE_BYTES, fast=fast)
    result = analyzer.finish(sha, with_chains=False)
    return result.model_dump(), [orjson.loads(item) for item in analyzer.chains.json_items()]


def _ticks(actions: list[int], outcomes: str = "") -> bytes:
    """Ticks of one episode with the given actions (indexes into ACTIONS); ``outcomes``: 'e' marks an error."""
    return b"".join(
        orjson.dumps(
            {
                "kind": "tick",
                "episode": "e1",
                "ts": i,
                "tick": i,
                "outcome": "error" if outcomes[i : i + 1] == "e" else "ok",
                "action": ACTIONS[a],
                "context_chars": 100 + 7 * i * i,
                "progress": False,
            }
        )
        + b"\n"
        for i, a in enumerate(actions)
    )


@settings(max_examples=300, deadline=None)
@given(traces())
@example(_ticks([0, 1, 0, 2, 2]))  # an alternation one tick short of an oscillation
@example(_ticks([0, 1, 0, 1, 0, 2, 1, 2, 1, 2]))
@example(_ticks([0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 0], "eeeee.eee.."))  # thrash, repeats, chains, their ends
def test_batch_path_equals_record_path(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.jsonl"
        path.write_bytes(data)
        fast = _analysis(path, fast=True)
        plain = _analysis(path, fast=False)
    assert fast == plain
    assert fast[0]["sha256"] == hashlib.sha256(data).hexdigest()


def test_batch_path_reports_bad_lines_with_their_numbers(tmp_path: Path) -> None:
    good = b'{"kind":"tick","episode":"e1","tick":0,"ts":1,"outcome":"ok","observation":"\\"kind\\":\\"tick\\""}'
    path = tmp_path / "t.jsonl"
    path.write_bytes(good + b"\n[1]\n" + good.replace(b'"tick":0', b'"tick":"1"') + b"\n\xff\n" + good + b"\n{")
    result, _ = _analysis(path, fast=True)
    reasons = {bad["line"]: bad["reason"] for bad in result["bad_lines"]}
    assert reasons[2] == "expected a JSON object, got list"
    assert "tick" in reasons[3]
    assert reasons[4].startswith("invalid UTF-8")
    assert reasons[6].startswith("torn last line")
    assert result["records"] == 2 and result["ticks"] == 2


def test_a_chain_id_beyond_64_bits_names_one_chain_whichever_decoder_reads_it(tmp_path: Path) -> None:
    """A batch holding invalid UTF-8 is decoded line by line with orjson (a float beyond 64 bits), a valid one with
    msgspec (the whole integer): the chain's id is the one orjson reads either way, so its ticks stay one chain."""
    ticks = b"".join(
        orjson.dumps({"kind": "tick", "episode": "e1", "ts": t, "tick": t, "outcome": o, "chain_role": role})[:-1]
        + b',"chain_id":18446744073709551616}\n'
        for t, o, role in ((0, "error", "failure"), (1, "ok", "recovered"))
    )
    ids = []
    for tail in (b"", b"\xff\n"):  # the second file's batch goes the orjson way
        path = tmp_path / f"t{len(tail)}.jsonl"
        path.write_bytes(ticks + tail)
        _, chains = _analysis(path, fast=True)
        ids.append([chain["chain_id"] for chain in chains])
    assert ids[0] == ids[1] == [str(float(2**64))]
