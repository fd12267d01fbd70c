"""A trace summarized in two byte ranges (the second from an empty state, as a second worker does) and joined with
``RangeMerge`` gives exactly the summary of one pass, wherever the boundary falls: episode and chain numbers, every
flag (thrash and deadlock runs crossing the boundary included), chain and filter line lists, the final open runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.traces import index_workers as workers_module
from pipeline.traces import summary_native
from pipeline.traces.index import TraceIndex
from pipeline.traces.index_workers import SummaryWorkers, apply_delta
from pipeline.traces.summary import _summarize_batch
from pipeline.traces.summary_columns import FLAG_DEADLOCK, FLAG_THRASH, _Summaries
from pipeline.traces.summary_split import RangeMerge
from pipeline.traces.summary_worker import SummaryWorker, _restore, state_of, summarize_delta
from tests.test_traces_summary_worker import summary_key, trace_lines

# Records made to keep runs open across a boundary: few episodes, mostly failures of a few verbs, little progress.
run_actions = st.sampled_from(
    [{"tool": "run_tests"}, {"tool": "edit", "args": {"path": "a.py"}}, {"tool": "bash"}, None, "run_tests"]
)


@st.composite
def run_records(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["tick"] * 12 + ["episode_start", "episode_end"]))
    rec: dict[str, Any] = {"kind": kind, "episode": draw(st.sampled_from(["e1", "e1", "e2", 7]))}
    if kind == "tick":
        rec["tick"] = draw(st.one_of(st.integers(0, 40), st.just(70_000)))  # (past a 16-bit column)
        rec["context_chars"] = draw(st.sampled_from([None, 900, 65_535, 65_536, 2**31 - 1]))
        rec["outcome"] = draw(st.sampled_from(["error", "error", "timeout", "death", "ok", "ok"]))
        rec["action"] = draw(run_actions)
        rec["progress"] = draw(st.sampled_from([False, False, False, None, True]))
        if draw(st.booleans()):
            rec["error_class"] = draw(st.sampled_from(["NotFound", "FileNotFoundError", "Locked", "Timeout"]))
        if draw(st.integers(0, 3)) == 0:
            rec["chain_id"] = draw(st.sampled_from(["c1", "c2"]))
    else:
        rec["outcome"] = "failure"
    return rec


run_lines = st.lists(run_records().map(orjson.dumps), min_size=1, max_size=80)


def key_of(s: _Summaries) -> tuple[Any, ...]:
    class Holder:
        summaries = s

    return summary_key(Holder())  # type: ignore[arg-type]


def one_pass(lines: list[bytes]) -> _Summaries:
    s = _Summaries()
    _summarize_batch(s, 0, lines)
    return s


def split_pass(lines: list[bytes], boundary: int, cuts: list[int]) -> tuple[_Summaries, RangeMerge]:
    """Lines before ``boundary`` in this pass; the rest from an empty state, in batches ending at ``cuts``."""
    s = _Summaries()
    if boundary:
        _summarize_batch(s, 0, lines[:boundary])
    ahead = _restore(state_of(_Summaries()))
    merge = RangeMerge(s, lambda i: lines[i])
    first = boundary
    for end in sorted({c for c in cuts if boundary < c < len(lines)} | {len(lines)}):
        if end > first:
            apply_delta(s, merge.map(summarize_delta(ahead, first, lines[first:end])))
            first = end
    s.episode_state = merge.final_state(ahead.episode_state)
    return s, merge


@settings(max_examples=300, deadline=None)
@given(lines=st.one_of(run_lines, trace_lines()), data=st.data(), numpy=st.booleans())
def test_split_summary_equals_one_pass(lines: list[bytes], data: st.DataObject, numpy: bool) -> None:
    """``numpy``: the deltas taken in without the C module's helpers (filter lines, chain spans, the compact
    columns' runs and rows found with numpy instead)."""
    boundary = data.draw(st.integers(0, len(lines)), label="boundary")
    cuts = data.draw(st.lists(st.integers(0, len(lines)), max_size=4), label="cuts")
    with pytest.MonkeyPatch.context() as m:
        if numpy:
            m.setattr(summary_native, "load", lambda: None)
        split, _ = split_pass(lines, boundary, cuts)
    assert key_of(split) == key_of(one_pass(lines))


def test_a_thrash_run_across_the_boundary_is_marked_as_one_pass_marks_it() -> None:
    fail = {"kind": "tick", "episode": "e1", "outcome": "error", "error_class": "CheckFailed", "action": {"tool": "x"}}
    stall = {"kind": "tick", "episode": "e2", "outcome": "ok", "progress": False}
    lines = [orjson.dumps({"kind": "episode_start", "episode": "e1"})]
    lines += [orjson.dumps({**fail, "tick": t}) for t in range(5)] + [
        orjson.dumps({**stall, "tick": t}) for t in range(9)
    ]
    whole = one_pass(lines)
    split, merge = split_pass(lines, 3, [7])
    assert key_of(split) == key_of(whole)
    assert merge.replayed > 0
    assert whole.flags[3] & FLAG_THRASH and whole.flags[14] & FLAG_DEADLOCK
    alone = one_pass(lines[3:])  # the range from an empty state, not joined: its marks are wrong
    assert not alone.flags[0] & FLAG_THRASH


def test_two_workers_give_the_summary_of_one_pass(tmp_path: Path, monkeypatch: Any) -> None:
    """The viewer with a second worker for the second half of the file (small batches, several in flight)."""
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 700)
    fail = {"kind": "tick", "episode": "e1", "outcome": "error", "error_class": "NotFound", "action": {"tool": "x"}}
    lines = [orjson.dumps({**fail, "tick": t, "chain_id": f"c{t % 7}"}) for t in range(400)]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    def summarize(worker: bool) -> tuple[Any, ...]:
        index = TraceIndex(path, prime_bytes=0, worker_min_bytes=1 if worker else None)
        try:
            index.run(threading.Event(), follow=False)
            assert index.complete and index.workers.worker is None
            if worker:
                assert index.workers.split_lines > 0, "a second worker summarized a range"
            return summary_key(index)
        finally:
            index.close()

    assert summarize(worker=True) == summarize(worker=False)


def test_narrow_columns_widen_when_a_value_does_not_fit(tmp_path: Path, monkeypatch: Any) -> None:
    """Ticks and context sizes are stored 16 bits wide until one does not fit; then 32 bits, same values, whether
    the wide value comes in this process or from a worker, in the first range or the second."""
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 500)
    small = [{"kind": "tick", "episode": "e1", "tick": t, "context_chars": 100 + t} for t in range(300)]
    for wide_at in (5, 150, 290):
        records = [dict(r) for r in small]
        records[wide_at].update(tick=-40_000, context_chars=1_000_000)
        path = tmp_path / f"w{wide_at}.jsonl"
        path.write_bytes(b"\n".join(orjson.dumps(r) for r in records) + b"\n")
        keys = []
        for worker in (False, True):
            index = TraceIndex(path, prime_bytes=0, worker_min_bytes=1 if worker else None)
            try:
                index.run(threading.Event(), follow=False)
                s = index.summaries
                assert (s.tick.typecode, s.context_chars.typecode) == ("i", "i")
                assert s.tick[wide_at] == -40_000 and s.context_chars[wide_at] == 1_000_000
                assert list(s.tick) == [r["tick"] for r in records]
                keys.append(summary_key(index))
            finally:
                index.close()
        assert keys[0] == keys[1]
    assert one_pass([orjson.dumps(r) for r in small]).tick.typecode == "h", "narrow while everything fits"


def test_the_second_range_is_capped_in_batches(tmp_path: Path, monkeypatch: Any) -> None:
    """A huge file: the second worker takes at most ``SPLIT_MAX_BATCHES`` batches (its requests go at once)."""
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 700)
    monkeypatch.setattr(SummaryWorkers, "SPLIT_MAX_BATCHES", 3)
    lines = [
        orjson.dumps({"kind": "tick", "episode": f"e{t // 50}", "tick": t, "outcome": "error"}) for t in range(600)
    ]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    index = TraceIndex(path, prime_bytes=0, worker_min_bytes=1)
    try:
        index.run(threading.Event(), follow=False)
        assert index.complete and index.generation == 0
        assert 0 < index.workers.split_lines * len(lines[0]) <= 3 * 700 + len(lines[0])
        split = summary_key(index)
    finally:
        index.close()
    assert split == key_of(one_pass(lines))


def test_the_worker_summarizes_while_the_scan_goes_on(tmp_path: Path, monkeypatch: Any) -> None:
    """Batches are asked of the first worker during the newline scan (many small scan steps here)."""
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 600)
    lines = [
        orjson.dumps({"kind": "tick", "episode": f"e{t // 40}", "tick": t, "outcome": "error"}) for t in range(900)
    ]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    index = TraceIndex(path, prime_bytes=0, worker_min_bytes=1, chunk_size=1500)
    asked_while_scanning: list[int] = []
    real_ask = SummaryWorker.ask

    def ask(worker: Any, first: int, start: int, end: int, count: int) -> None:
        if index.scanned < index.size:
            asked_while_scanning.append(first)
        real_ask(worker, first, start, end, count)

    monkeypatch.setattr(SummaryWorker, "ask", ask)
    try:
        index.run(threading.Event(), follow=False)
        assert index.complete and index.generation == 0 and index.workers.split_lines > 0
        assert len(asked_while_scanning) > 3
        split = summary_key(index)
    finally:
        index.close()
    assert split == key_of(one_pass(lines))


def test_growth_while_the_second_worker_runs_is_summarized_after_the_join(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 800)
    fail = {"kind": "tick", "episode": "e1", "outcome": "error", "error_class": "CheckFailed", "action": {"tool": "x"}}
    lines = [orjson.dumps({**fail, "tick": t, "chain_id": f"c{t % 5}"}) for t in range(500)]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    index = TraceIndex(path, prime_bytes=0, worker_min_bytes=1)
    try:
        while index.workers.ahead is None:
            assert index.work_step()
        more = [orjson.dumps({**fail, "tick": t, "outcome": "ok" if t % 7 else "error"}) for t in range(500, 700)]
        with open(path, "ab") as fh:
            fh.write(b"\n".join(more) + b"\n")
        assert index.check_file() == "grown"
        index.run(threading.Event(), follow=False)
        assert index.complete and index.generation == 0 and index.workers.split_lines > 0
        assert len(index) == 700
        grown = summary_key(index)
    finally:
        index.close()
    assert grown == key_of(one_pass(lines + more))


def test_a_dead_second_worker_means_summarizing_again_in_process(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 800)
    lines = [
        orjson.dumps({"kind": "tick", "episode": f"e{t // 30}", "tick": t, "outcome": "error"}) for t in range(500)
    ]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    index = TraceIndex(path, prime_bytes=0, worker_min_bytes=1)
    try:
        while index.workers.ahead is None:
            assert index.work_step()
        ahead = index.workers.ahead
        ahead.proc.kill()
        index.run(threading.Event(), follow=False)
        assert ahead.proc.poll() is not None and index.workers.ahead is None and index.workers.worker is None
        assert index.complete and index.generation == 1 and index.workers.min_bytes is None
        result = summary_key(index)
    finally:
        index.close()
    assert result == key_of(one_pass(lines))


@settings(max_examples=200, deadline=None)
@given(
    before=st.lists(st.text(min_size=1, max_size=6), max_size=30, unique=True),
    names=st.lists(st.text(min_size=1, max_size=6), max_size=40, unique=True),
    decoys=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_interning_a_delta_s_names_together_numbers_them_as_one_by_one(
    before: list[str], names: list[str], decoys: int
) -> None:
    """``_intern_all``: the names known before the range keep their numbers, new ones are numbered in order; a new
    name whose tag is among the known ones (a collision, made here by adding new names' tags to them) goes the slow
    way and still comes out new."""
    import numpy as np

    from pipeline.traces.summary_names import NameStore, tag_of
    from pipeline.traces.summary_split import _intern_all, _sorted_tags

    store, reference = NameStore(), NameStore()
    for name in before:
        store.intern(name)
        reference.intern(name)
    colliding = [name for k, name in enumerate(names) if decoys >> (k % 32) & 1]
    known = np.sort(np.concatenate([_sorted_tags(np, store), np.array([tag_of(n) for n in colliding], np.uint32)]))
    numbers = _intern_all(np, store, names, known)
    assert numbers == [reference.intern(name) for name in names]
    assert list(store.names) == list(reference.names)
