"""``phasef trace stats`` on two processes (``pipeline.traces.analysis_split``): the trace cut anywhere, its second
half analyzed by a forked process and joined, gives exactly the analysis of one pass; where the cut cannot be joined
exactly (an episode open there) this process reads on and the result is the one pass's too. Traces are random and
dirty (episodes one after the other and interleaved, wrong types, bad JSON, invalid UTF-8, a torn last line)."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.traces.analysis import _stream, analyze_compact
from pipeline.traces.analysis_split import analyze_phasef, split_point
from pipeline.traces.analyzer import TraceAnalyzer
from pipeline.traces.reader import DEFAULT_MAX_LINE_BYTES, BadLine
from tests.test_traces_analysis_fastpath import _line, tick

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the split forks")

Result = tuple[dict[str, Any], list[dict[str, Any]]]


@st.composite
def episode_block(draw: st.DrawFn) -> list[bytes]:
    """One episode from start to end (either may be missing), its ticks with chains, failures, oscillations."""
    episode = draw(st.sampled_from(["e1", "e2", "e3"]))
    run = draw(st.sampled_from([None, "r1"]))
    lines: list[bytes] = []
    head: dict[str, Any] = {"kind": "episode_start", "episode": episode, "ts": 1.0}
    if run is not None:
        head["run_id"] = run
    if draw(st.integers(0, 4)):
        head["context_window"] = draw(st.sampled_from([None, 0, 2]))
        lines.append(orjson.dumps(head))
    for _ in range(draw(st.integers(0, 12))):
        rec = draw(tick())
        if rec.get("episode") in ("e1", "e2", "e3"):
            rec["episode"] = episode
        rec.pop("run_id", None)
        if run is not None:
            rec["run_id"] = run
        lines.append(orjson.dumps(rec) if draw(st.integers(0, 9)) else _line(draw))
    if draw(st.integers(0, 4)):
        end = {**head, "kind": "episode_end", "outcome": draw(st.sampled_from(["success", "death", "timeout"]))}
        end.pop("context_window", None)
        lines.append(orjson.dumps(end))
    return lines


@st.composite
def split_traces(draw: st.DrawFn) -> tuple[bytes, int]:
    """A trace and a cut (any byte offset: the split moves it on to the next line start)."""
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 8))):
        lines.extend(draw(episode_block()) if draw(st.integers(0, 3)) else [_line(draw)])
    data = b"\n".join(lines)
    if lines and draw(st.booleans()):
        data += b"\n"
    if draw(st.integers(0, 3)) == 0:
        data += draw(st.sampled_from([b'{"kind":"tick","epis', b'{"kind":"episode_end","episode":"e1","ts":1}']))
    return data, draw(st.integers(0, len(data) + 2))


OPTIONS: dict[str, Any] = {"deadlock_window": 3, "thrash_min": 2}


def _one_pass(path: Path) -> Result:
    analyzer = TraceAnalyzer(str(path), **OPTIONS)
    sha = _stream(path, analyzer, DEFAULT_MAX_LINE_BYTES)
    result = analyzer.finish(sha, with_chains=False)
    return result.model_dump(), [orjson.loads(item) for item in analyzer.chains.json_items()]


def _split(path: Path, cut: int | None) -> tuple[Result, bool]:
    analyzer = TraceAnalyzer(str(path), **OPTIONS)
    sha, joined = analyze_phasef(path, analyzer, DEFAULT_MAX_LINE_BYTES, cut=cut, workers=2)
    result = analyzer.finish(sha, with_chains=False)
    return (result.model_dump(), [orjson.loads(item) for item in analyzer.chains.json_items()]), joined


joins: list[bool] = []


@settings(max_examples=250, deadline=None)
@given(split_traces())
def _split_equals_one_pass(case: tuple[bytes, int]) -> None:
    data, cut = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.jsonl"
        path.write_bytes(data)
        one = _one_pass(path)
        two, joined = _split(path, cut)
    joins.append(joined)
    assert two == one
    assert two[0]["sha256"] == hashlib.sha256(data).hexdigest()


def test_split_anywhere_equals_one_pass() -> None:
    assert threading.active_count() == 1, "the split forks only in a process of one thread"
    joins.clear()
    _split_equals_one_pass()
    # Both ways were taken: second halves joined, and cuts inside an episode read on by this process.
    assert sum(joins) >= 20, sum(joins)
    assert len(joins) - sum(joins) >= 20, joins.count(False)


def _episodes(n: int, ticks: int = 30) -> bytes:
    out = []
    for e in range(n):
        name = f"ep-{e}"
        out.append({"schema": "phasef.dirty_trace/1", "kind": "episode_start", "episode": name, "ts": float(e)})
        for t in range(ticks):
            failing = t % 7 in (3, 4)
            out.append(
                {
                    "kind": "tick",
                    "episode": name,
                    "ts": e + t / 100,
                    "tick": t,
                    "action": {"act": ["read", "list"][t % 2], "arg": str(t % 3)},
                    "outcome": "error" if failing else "ok",
                    "error_class": "NotFound" if failing else None,
                    "context_chars": 1000 + 13 * t + e,
                    "progress": t % 5 != 0,
                }
            )
        out.append({"kind": "episode_end", "episode": name, "ts": e + 1.0, "outcome": "death" if e % 5 else "success"})
    return b"".join(orjson.dumps(rec) + b"\n" for rec in out)


def test_cut_near_the_middle_is_an_episode_start_and_joins(tmp_path: Path) -> None:
    data = _episodes(40) + b"[1]\n\xff\n"
    path = tmp_path / "t.jsonl"
    path.write_bytes(data)
    at = split_point(path, len(data))
    assert len(data) // 2 <= at < len(data)
    assert b'"kind":"episode_start"' in data[at:].split(b"\n", 1)[0]
    two, joined = _split(path, None)
    assert joined
    assert two == _one_pass(path)
    lines = data.count(b"\n")
    assert [bad["line"] for bad in two[0]["bad_lines"]] == [lines - 1, lines]


def test_cut_inside_an_episode_reads_on_in_one_process(tmp_path: Path) -> None:
    data = _episodes(4)
    path = tmp_path / "t.jsonl"
    path.write_bytes(data)
    inside = data.index(b'"tick":5,')
    two, joined = _split(path, inside)
    assert not joined
    assert two == _one_pass(path)


def test_large_trace_splits_by_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``analyze_compact`` (what ``phasef trace stats`` calls) splits a trace of ``SPLIT_MIN_BYTES`` or more."""
    import pipeline.traces.analysis_split as split

    data = _episodes(60)
    monkeypatch.setattr(split, "SPLIT_MIN_BYTES", len(data) // 2)
    seen: list[bool] = []
    real = split.analyze_phasef

    def spy(*args: Any, **kwargs: Any) -> tuple[str, bool]:
        sha, joined = real(*args, **kwargs)
        seen.append(joined)
        return sha, joined

    monkeypatch.setattr(split, "analyze_phasef", spy)
    path = tmp_path / "t.jsonl"
    path.write_bytes(data)
    result, chains = analyze_compact(path, **OPTIONS)
    assert seen == [True] or (os.cpu_count() or 1) < 2
    assert (result.model_dump(), [orjson.loads(item) for item in chains.json_items()]) == _one_pass(path)


@st.composite
def record_list(draw: st.DrawFn) -> list[Any]:
    """Decoded records as an importer gives them: lines from ``source.line`` (in order, with gaps, repeated,
    missing, of the wrong type) or their positions; objects that are not records among them."""
    out: list[Any] = []
    line = 0
    for _ in range(draw(st.integers(0, 40))):
        choice = draw(st.integers(0, 9))
        if choice == 0:
            out.append(draw(st.sampled_from([None, [1], "x", 3])))
            continue
        rec = draw(tick()) if choice > 2 else {"kind": "episode_start", "episode": "e1", "ts": 1}
        how = draw(st.integers(0, 5))
        if how < 3:
            line += draw(st.sampled_from([1, 1, 1, 0, 2, 50]))
            rec["source"] = {"line": line}
        elif how == 3:
            rec["source"] = {"line": draw(st.sampled_from([True, "7", None, -3]))}
        elif how == 4:
            rec["source"] = draw(st.sampled_from([None, 5, {"file": "x"}]))
        out.append(rec)
    return out


@settings(max_examples=300, deadline=None)
@given(record_list())
def test_records_in_runs_equal_records_one_by_one(records: list[Any]) -> None:
    """``analyze_records`` feeds runs of consecutive lines at once: the same as feeding each record alone."""
    from pipeline.traces.analysis import analyze_records

    runs = analyze_records(records, **OPTIONS).model_dump()
    alone = TraceAnalyzer("<memory>", **OPTIONS)
    for position, obj in enumerate(records, 1):
        if not isinstance(obj, dict):
            alone.bad(BadLine(file="<memory>", line=position, reason=f"expected an object, got {type(obj).__name__}"))
            continue
        source = obj.get("source")
        line = source.get("line") if isinstance(source, dict) else None
        alone.feed(line if isinstance(line, int) else position, obj)
    assert runs == alone.finish().model_dump()


def test_a_failed_second_process_leaves_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second process dies before sending anything, or sends a torn result: this process reads on alone."""
    import pipeline.traces.analysis_split as split

    data = _episodes(20)
    path = tmp_path / "t.jsonl"
    path.write_bytes(data)
    one = _one_pass(path)

    def dies(*args: Any) -> Any:
        raise RuntimeError("the second process fails")

    monkeypatch.setattr(split, "_analyze_half", dies)
    two, joined = _split(path, None)
    assert not joined and two == one

    monkeypatch.undo()
    real_dump = split.pickle.dump

    def torn(obj: Any, out: Any, protocol: int) -> None:
        out.write(split.pickle.dumps(obj, protocol)[:100])
        raise RuntimeError("torn")

    monkeypatch.setattr(split.pickle, "dump", torn)
    two, joined = _split(path, None)
    monkeypatch.setattr(split.pickle, "dump", real_dump)
    assert not joined and two == one


def test_the_fork_freezes_the_collector_for_the_child_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second process is forked with the objects of this one in the collector's permanent generation (its
    collections then leave them, and the pages they share, alone); this process takes them back at once, so its
    own collections go on as before."""
    import gc

    path = tmp_path / "t.jsonl"
    path.write_bytes(
        b"".join(orjson.dumps({"kind": "tick", "episode": f"e{i}", "tick": i}) + b"\n" for i in range(200))
    )
    assert gc.get_freeze_count() == 0
    frozen_at_fork: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        frozen_at_fork.append(gc.get_freeze_count())
        return real_fork()

    monkeypatch.setattr(os, "fork", fork)  # (the child inherits the frozen state as it is at this call)
    (result, _), joined = _split(path, len(path.read_bytes()) // 2)
    assert joined and frozen_at_fork and frozen_at_fork[0] > 0
    assert gc.get_freeze_count() == 0
    assert result == _one_pass(path)[0]


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=3000),
    st.lists(st.integers(1, 700), max_size=12),
    st.lists(st.one_of(st.integers(-1, 900), st.just("line"), st.just("into")), max_size=30),
)
def test_pieces_read_back_as_one_file_would(data: bytes, cuts: list[int], calls: list[int | str]) -> None:
    """``_Pieces`` (the second half's pickle as the pipe gave it) reads like ``io.BytesIO`` over the joined bytes,
    wherever the pieces were cut, by ``read``, ``readline`` and ``readinto``."""
    import io

    from pipeline.traces.analysis_split import _Pieces

    pieces, at = _Pieces(), 0
    for cut in cuts:
        if at < len(data):
            pieces.add(data[at : at + cut])
            at += cut
    if at < len(data):
        pieces.add(data[at:])
    reference = io.BytesIO(data)
    for call in calls:
        if call == "line":
            assert pieces.readline() == reference.readline()
        elif call == "into":
            mine, theirs = bytearray(17), bytearray(17)
            assert pieces.readinto(mine) == reference.readinto(theirs)
            assert mine == theirs
        else:
            assert isinstance(call, int)
            assert pieces.read(call) == reference.read(call)
    assert pieces.read() == reference.read()


def test_a_pickle_in_pieces_loads_as_the_whole() -> None:
    from array import array

    from pipeline.traces.analysis_split import _Pieces

    value = {"chains": array("q", range(50_000)), "ids": [f"e{i}\x1fc{i % 7}" for i in range(5000)], "n": 3.5}
    data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    pieces = _Pieces()
    for at in range(0, len(data), 1000):
        pieces.add(data[at : at + 1000])
    assert pickle.load(pieces) == value
