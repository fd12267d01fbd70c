"""TraceIndex: line offsets, on-demand reads, summaries and flags, tailing, truncation and rotation, search."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson
import pytest

from pipeline.traces.index import LineError, TraceIndex
from pipeline.traces.summary_columns import (
    FILTER_FLAGS,
    FLAG_BAD_LINE,
    FLAG_DEADLOCK,
    FLAG_DEATH,
    FLAG_RECOVERY,
    FLAG_SCHEMA_ERROR,
    FLAG_THRASH,
    FLAG_TRAP,
    KIND_EPISODE_END,
    KIND_EPISODE_START,
    KIND_TICK,
)
from tests.tui_helpers import append_records, many_ticks, sample_records, tick, wait_for, write_trace


def index_all(index: TraceIndex) -> TraceIndex:
    while index.work_step():
        pass
    return index


def test_lines_and_records_match_the_file(tmp_path: Path) -> None:
    records = sample_records()
    path = write_trace(tmp_path / "t.jsonl", records)
    index = index_all(TraceIndex(path))
    assert len(index) == len(records)
    for i, rec in enumerate(records):
        assert index.line(i) == orjson.dumps(rec)
        assert index.record(i) == rec
    with pytest.raises(IndexError):
        index.line(len(records))


def test_small_chunks_and_a_line_longer_than_a_chunk(tmp_path: Path) -> None:
    records = [*many_ticks("e", 20), tick("e", 20, observation="x" * 5000), *many_ticks("e", 5, 21)]
    path = write_trace(tmp_path / "t.jsonl", records)
    index = index_all(TraceIndex(path, chunk_size=256, prime_bytes=0))
    assert len(index) == len(records)
    assert index.record(20)["observation"] == "x" * 5000  # type: ignore[index]
    assert [index.record(i)["tick"] for i in range(len(records))] == list(range(26))  # type: ignore[index]


def test_first_screen_is_indexed_on_open(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", many_ticks("e", 5000))
    index = TraceIndex(path, prime_bytes=4096)
    assert 0 < len(index) < 5000, "only the first KB is indexed before the indexer runs"
    assert index.summarized == len(index)
    assert index.record(0)["tick"] == 0  # type: ignore[index]
    assert not index.complete


def test_summary_flags_kinds_and_chains(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records())
    index = index_all(TraceIndex(path))
    kinds = [index.summary(i).kind for i in range(len(index))]  # type: ignore[union-attr]
    assert kinds[0] == KIND_EPISODE_START and kinds[1] == KIND_TICK and kinds[9] == KIND_EPISODE_END
    assert list(index.flag_lines(FLAG_SCHEMA_ERROR)) == [2, 3]
    assert list(index.flag_lines(FLAG_RECOVERY)) == [3, 4]
    assert list(index.flag_lines(FLAG_THRASH)) == [7], "the third identical failure is thrashing"
    assert 8 in index.flag_lines(FLAG_DEADLOCK)
    assert list(index.flag_lines(FLAG_TRAP)) == [8, 12, 13]
    assert list(index.flag_lines(FLAG_DEATH)) == [13, 14]
    assert index.chain_count == 2, "c1 of e1 and c1 of e2 are different chains"
    assert list(index.chain_lines(0)) == [2, 3, 4]
    assert list(index.chain_lines(1)) == [12, 13]
    assert index.chain_of_line(13) == 1 and index.chain_of_line(1) is None
    summary = index.summary(2)
    assert summary is not None and summary.episode == "e1" and summary.tick == 1 and summary.chain is not None
    assert summary.latency_s == pytest.approx(0.26) and summary.context_chars == 1010


def test_no_progress_for_a_window_is_a_deadlock(tmp_path: Path) -> None:
    stuck = [tick("e", t, progress=False, action={"tool": "ls", "args": {"n": t}}) for t in range(10)]
    path = write_trace(tmp_path / "t.jsonl", stuck)
    index = index_all(TraceIndex(path))
    assert list(index.flag_lines(FLAG_DEADLOCK)) == [7, 8, 9]
    assert not index.flag_lines(FLAG_THRASH)


def test_bad_and_blank_lines_are_named_and_the_rest_is_read(tmp_path: Path) -> None:
    lines = [orjson.dumps(tick("e", 0)) + b"\n", b"{not json\n", b"\n", b"[1, 2]\n", b'{"kind": "nope"}\n']
    lines.append(orjson.dumps(tick("e", 1)) + b"\n")
    path = write_trace(tmp_path / "t.jsonl", lines)
    index = index_all(TraceIndex(path))
    assert len(index) == 6
    bad = index.record(1)
    assert isinstance(bad, LineError) and bad.line == 2 and "not valid JSON" in bad.reason and str(path) in str(bad)
    assert isinstance(index.record(3), LineError) and "not a JSON object" in index.record(3).reason  # type: ignore[union-attr]
    assert list(index.flag_lines(FLAG_BAD_LINE)) == [1, 3, 4], "a blank line is not a bad record"
    assert index.record(5)["tick"] == 1  # type: ignore[index]


def test_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(orjson.dumps(tick("e", 0)) + b"\n" + orjson.dumps(tick("e", 1)))
    following = index_all(TraceIndex(path))
    assert len(following) == 1, "a line still being written is not shown while following"
    finished = index_all(TraceIndex(path, include_partial=True))
    assert len(finished) == 2 and finished.record(1)["tick"] == 1  # type: ignore[index]
    with open(path, "ab") as fh:
        fh.write(b"\n")
    assert following.check_file() == "grown"
    index_all(following)
    assert len(following) == 2


def test_tail_growth_truncation_rotation_and_rewrite(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", many_ticks("e", 10))
    index = index_all(TraceIndex(path))
    assert index.check_file() == "same"
    append_records(path, many_ticks("e", 5, 10))
    assert index.check_file() == "grown"
    index_all(index)
    assert len(index) == 15 and index.record(14)["tick"] == 14  # type: ignore[index]

    generation = index.generation
    write_trace(path, many_ticks("f", 3))  # truncated in place
    assert index.check_file() == "truncated"
    index_all(index)
    assert index.generation == generation + 1
    assert len(index) == 3 and index.record(0)["episode"] == "f"  # type: ignore[index]

    rotated = tmp_path / "t.jsonl.1"
    os.replace(path, rotated)
    write_trace(path, many_ticks("g", 4))
    assert index.check_file() == "rotated"
    index_all(index)
    assert len(index) == 4 and index.record(3)["episode"] == "g"  # type: ignore[index]

    # rewritten to a larger size between two looks: the last indexed newline is gone
    longer = [tick("h", t, observation="y" * 50) for t in range(8)]
    with open(path, "r+b") as fh:
        fh.truncate(0)
        for rec in longer:
            fh.write(orjson.dumps(rec) + b"\n")
    assert index.check_file() == "truncated"
    index_all(index)
    assert [index.record(i)["episode"] for i in range(len(index))] == ["h"] * 8  # type: ignore[index]

    path.unlink()
    assert index.check_file() == "missing"


def test_indexer_thread_follows_appends(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", many_ticks("e", 100))
    index = TraceIndex(path)
    stop = threading.Event()
    worker = threading.Thread(target=index.run, args=(stop,), kwargs={"follow": True, "idle_s": 0.01})
    worker.start()
    try:
        assert wait_for(lambda: index.complete and len(index) == 100)
        for batch in range(5):
            append_records(path, many_ticks("e", 200, 100 + 200 * batch))
        assert wait_for(lambda: len(index) == 1100 and index.summarized == 1100)
        assert index.record(1099)["tick"] == 1099  # type: ignore[index]
    finally:
        stop.set()
        worker.join(2)
    assert not worker.is_alive()


def test_find_forward_backward_and_with_a_filter(tmp_path: Path) -> None:
    records = sample_records()
    path = write_trace(tmp_path / "t.jsonl", records)
    index = index_all(TraceIndex(path, chunk_size=300))
    assert index.find("SCHEMAviolation", 0) == 2, "ASCII case is ignored"
    assert index.find("SchemaViolation", 3) == 3
    assert index.find("SchemaViolation", 4) is None
    assert index.find("deadlock", 14, forward=False) == 8
    assert index.find("schema_repair", 14, forward=False) == 3
    deaths = set(index.flag_lines(FLAG_DEATH))
    assert index.find("e2", 0, accept=deaths.__contains__) == 13
    assert index.find("nowhere to be found", 0) is None
    assert index.find("", 0) is None


def test_every_filter_has_a_flag_list(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records())
    index = index_all(TraceIndex(path))
    counts = {name: len(index.flag_lines(flag)) for name, flag in FILTER_FLAGS.items()}
    assert counts["death"] == 2 and counts["thrash"] == 1 and counts["bad_line"] == 0
    assert index.summaries.flagged_upto == len(index)


def test_prefetch_reads_a_screen_of_lines_at_once(tmp_path: Path) -> None:
    records = many_ticks("e", 50)
    path = write_trace(tmp_path / "t.jsonl", records)
    index = index_all(TraceIndex(path))
    index.prefetch(10, 29)
    index.prefetch(45, 80)  # clamped to the lines there are
    os.truncate(path, 0)  # what is cached no longer needs the file
    assert [index.record(i)["tick"] for i in range(10, 30)] == list(range(10, 30))  # type: ignore[index]
    assert index.line(49) == orjson.dumps(records[49])
    index.prefetch(0, 5)  # a short read (the file shrank) caches nothing...
    assert index.line(0) == b"", "...and reads find the file empty until the indexer notices and starts over"
