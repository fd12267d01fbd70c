"""The fast summary path (msgspec ``TraceRecord`` decoding, compact chain store, provisional badges, idle frames)
gives the results of the exact path and does no work once nothing can change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasef_tui.trace_view import prepare_trace_view
from pipeline.traces.analysis import analyze, analyze_compact, analyze_records
from pipeline.traces.index import TraceIndex
from pipeline.traces.reader import BadLine, iter_records
from pipeline.traces.records import TraceRecord, decode_lines, record_from_dict
from pipeline.traces.summary_columns import FLAG_BAD_LINE, FLAG_DEADLOCK, FLAG_THRASH
from tests.tui_helpers import open_feed, sample_records, write_trace

DAMAGE = [
    b"",
    b"   ",
    b"{}",
    b"[1,2]",
    b'"just a string"',
    b"null",
    b"{not json",
    b'{"kind":"tick","episode":"e1","ts":1.0,"tick":"x","outcome":"ok"}',  # a tick given as a string
    b'{"kind":"tick","episode":"e1","ts":2.0,"tick":9,"outcome":"ok","observation":"bad \xff byte"}',
    b'{"kind":"weird","episode":"e1"}',
    b'{"kind":[1],"episode":"e1"}',  # an unhashable kind
    b'{"x":1e400}',  # a number out of range in a field no summary reads
    b'{"foo":1}',
]


def _trace_with_damage(tmp_path: Path) -> Path:
    good = [orjson.dumps(r) for r in sample_records()]
    lines: list[bytes] = []
    for i, raw in enumerate(good):
        lines.append(raw)
        if i < len(DAMAGE):
            lines.append(DAMAGE[i])
    path = tmp_path / "damaged.jsonl"
    path.write_bytes(b"\n".join(lines) + b'\n{"kind":"tick","episode":"e')  # and a torn last line
    return path


def _exact_analysis(path: Path) -> dict[str, Any]:
    """The analysis through the exact path: orjson dicts from the reader, then ``analyze_records``."""
    records: list[dict[str, Any]] = []
    bad: list[BadLine] = []
    for item in iter_records(path):
        if isinstance(item, BadLine):
            bad.append(item)
        else:
            line, obj = item
            records.append({**obj, "source": {"line": line}})
    result = analyze_records(records, file=str(path), bad_lines=bad)
    dumped = result.model_dump(mode="json")
    dumped.pop("sha256")
    return dumped


def test_fast_analysis_equals_the_exact_path_on_damaged_lines(tmp_path: Path) -> None:
    path = _trace_with_damage(tmp_path)
    fast = analyze(path, fmt="phasef").model_dump(mode="json")
    fast.pop("sha256")
    exact = _exact_analysis(path)
    # bad lines come in a different order (the reader's before the analyzer's in the exact path): compare sets
    key = lambda b: (b["line"], b["reason"])  # noqa: E731
    assert sorted(fast.pop("bad_lines"), key=key) == sorted(exact.pop("bad_lines"), key=key)
    assert fast == exact
    reasons = {b.line: b.reason for b in analyze(path, fmt="phasef").bad_lines}
    assert any("invalid UTF-8" in r for r in reasons.values()), "invalid UTF-8 in a skipped field stays bad"
    assert any("torn last line" in r for r in reasons.values())
    assert any("got list" in r for r in reasons.values())


def test_decoder_keeps_what_orjson_rejects() -> None:
    lines = [b'{"kind":"tick","obs":"\xff"}', b'{"kind":"tick","episode":"e"}', b"[1]", b"{oops"]
    out = list(decode_lines(lines))
    assert isinstance(out[0], orjson.JSONDecodeError)  # the batch is not valid UTF-8: every line the exact way
    assert isinstance(out[1], TraceRecord) and out[1].episode == "e"
    assert out[2] == [1]
    assert isinstance(out[3], orjson.JSONDecodeError)
    rec = record_from_dict({"kind": "tick", "tick": 3, "unknown": 1})
    assert rec.tick == 3 and rec.get("episode", "none") == "none"


def test_compact_chains_equal_the_full_list_and_stats_json_streams_them(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records() * 3)
    full = analyze(path)
    compact, store = analyze_compact(path)
    assert compact.chains == [] and len(store) == len(full.chains) > 0
    assert list(store) == full.chains
    assert store[-1] == full.chains[-1] and store[1:3] == full.chains[1:3]
    assert [json.loads(item) for item in store.json_items()] == [c.model_dump(mode="json") for c in full.chains]
    assert compact.mttr_ticks == full.mttr_ticks and compact.mttr_seconds == full.mttr_seconds
    out = subprocess.run(
        [sys.executable, "-m", "phasef_tui.cli", "trace", "stats", "--json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == json.loads(full.model_dump_json())
    text = subprocess.run(
        [sys.executable, "-m", "phasef_tui.cli", "trace", "stats", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    recovered = sum(c.outcome == "recovered" for c in full.chains)
    assert f"recovery chains: {len(full.chains)} ({recovered} recovered" in text


def test_index_summary_of_damaged_lines(tmp_path: Path) -> None:
    path = _trace_with_damage(tmp_path)
    with TraceIndex(path, include_partial=True) as index:
        while index.work_step():
            pass
        flags = {index.line(i): index.summaries.flags[i] for i in range(len(index))}
    assert not flags[b""] & FLAG_BAD_LINE and not flags[b"{}"] & FLAG_BAD_LINE  # blank and empty: harmless
    for raw in (b"[1,2]", b"{not json", b'{"kind":[1],"episode":"e1"}', b'{"foo":1}', DAMAGE[8]):
        assert flags[raw] & FLAG_BAD_LINE, raw


def test_badges_before_the_summary_pass_reaches_a_line(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records() * 4)
    index = TraceIndex(path, include_partial=True, prime_bytes=0)
    while index.scan_step():
        pass
    assert index.summarized == 0
    provisional = [index.line_flags(i) for i in range(len(index))]
    while index.summarize_step():
        pass
    final = [index.line_flags(i) for i in range(len(index))]
    sequential = FLAG_THRASH | FLAG_DEADLOCK  # need the ticks before: added when the pass arrives
    assert any(provisional)
    assert [f & ~sequential for f in provisional] == [f & ~sequential for f in final]
    assert all(p & ~f == 0 for p, f in zip(provisional, final, strict=True)), "a provisional badge is never wrong"
    index.close()


def test_a_finished_feed_settles_and_a_stopped_follow_ends_its_thread(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records())
    feed = open_feed(path)
    assert feed.settled
    feed.stop()
    followed = open_feed(path, follow=True)
    followed.start()
    assert not followed.settled
    followed.stop_following()
    assert followed._thread is not None
    followed._thread.join(5)
    assert followed.settled and followed.index.complete
    followed.stop()


async def test_frames_stop_when_the_trace_is_settled_and_input_restarts_them(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records())
    view = prepare_trace_view(path, follow=False)
    assert not isinstance(view, str)
    app = view.app
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if app.pace.paused:  # type: ignore[attr-defined]
                break
        assert app.pace.paused  # type: ignore[attr-defined]
        frames = app.frames  # type: ignore[attr-defined]
        await pilot.pause(0.5)
        assert app.frames == frames, "no frames while paused"  # type: ignore[attr-defined]
        await pilot.press("j")
        await pilot.pause(0.2)
        assert app.frames > frames  # type: ignore[attr-defined]
    view.close()


def test_vectorized_newline_scan_equals_the_loop(tmp_path: Path, monkeypatch: Any) -> None:
    import pipeline.traces.index_scan as index_module

    path = write_trace(tmp_path / "t.jsonl", sample_records() * 400)
    with open(path, "ab") as fh:
        fh.write(b"\n\n" + b"x" * 5000 + b"\n" + b'{"kind": "tick"')  # blank lines, a long line, a torn tail
    assert path.stat().st_size > 2 * index_module.VECTOR_SCAN_BYTES

    def ends(vector_bytes: int) -> list[int]:
        monkeypatch.setattr(index_module, "VECTOR_SCAN_BYTES", vector_bytes)
        with TraceIndex(path, include_partial=True, chunk_size=300_000) as index:
            while index.scan_step():
                pass
            return index.ends.tolist()

    assert index_module.numpy_or_none() is not None
    assert ends(1 << 18) == ends(1 << 40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.lists(st.binary(max_size=90).map(lambda b: b.replace(b"\n", b"")), max_size=12), min_size=1, max_size=5
    ),
    st.booleans(),
)
def test_big_chunks_read_into_one_buffer_find_every_line_as_the_file_grows(
    tmp_path: Path, monkeypatch: Any, growths: list[list[bytes]], torn: bool
) -> None:
    """The newline scan's big chunks are read into one buffer, used again and let go at the end of the file: a file
    growing in steps (lines cut by chunk boundaries, blank lines, a torn last line) gives the end offsets of its
    lines, each scan after the last growth starting where the previous stopped."""
    import pipeline.traces.index_scan as index_scan

    monkeypatch.setattr(index_scan, "VECTOR_SCAN_BYTES", 16)  # (every chunk the vectorized way)
    monkeypatch.setattr(index_scan, "VECTOR_STEP_BYTES", 48)
    assert index_scan.numpy_or_none() is not None
    path = tmp_path / f"grow-{len(growths)}-{torn}.jsonl"
    path.write_bytes(b"")
    line_ends = index_scan.LineEnds(include_partial=False, chunk_size=20)
    fd = os.open(path, os.O_RDONLY)
    try:
        content = b""
        for lines in growths:
            content += b"".join(line + b"\n" for line in lines)
            path.write_bytes(content + (b'{"kind": "ti' if torn else b""))
            size = os.fstat(fd).st_size
            while line_ends.scan(fd, size):
                pass
            expected = [i + 1 for i, byte in enumerate(content) if byte == 10]
            assert line_ends.ends.tolist() == expected
            assert line_ends.scanned == (expected[-1] if expected else 0)
            assert line_ends._buffer is None  # (the end was reached: the buffer went)
    finally:
        os.close(fd)
