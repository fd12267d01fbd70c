"""The second summary worker starts on open with a byte range (it finds its lines itself while the viewer's newline
scan goes on), and the join gives exactly the summary of one pass: lines longer than a batch, a last line without
its newline, a boundary falling inside a line, runs open across the boundary."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.traces import index_workers as workers_module
from pipeline.traces.index import TraceIndex
from pipeline.traces.index_workers import _last_line_end, _line_start_from
from pipeline.traces.summary_worker import read_range
from tests.test_traces_summary_split import key_of, one_pass
from tests.test_traces_summary_worker import summary_key


def _lines() -> list[bytes]:
    fail = {"kind": "tick", "episode": "e1", "outcome": "error", "error_class": "NotFound", "action": {"tool": "x"}}
    lines = []
    for t in range(600):
        rec: dict[str, Any] = {**fail, "tick": t, "chain_id": f"c{t % 7}", "episode": f"e{t // 150}"}
        if t % 97 == 0:
            rec["observation"] = "y" * 2500  # longer than a batch
        if t % 5 == 0:
            rec["outcome"] = "ok"
        lines.append(orjson.dumps(rec))
    return lines


@pytest.mark.parametrize("partial", [False, True])
def test_the_second_worker_takes_a_byte_range_on_open(tmp_path: Path, monkeypatch: Any, partial: bool) -> None:
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 900)
    lines = _lines()
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"" if partial else b"\n"))
    index = TraceIndex(path, include_partial=True, prime_bytes=0, worker_min_bytes=1, chunk_size=4000)
    try:
        assert index.work_step()
        assert index.workers.ahead is not None and index.scanned < index.size, "started before the scan ended"
        assert index.workers.ahead_first == -1, "its first line is not known yet"
        index.run(threading.Event(), follow=False)
        assert index.complete and index.generation == 0 and index.workers.worker is None
        assert index.workers.split_lines > 100
        result = summary_key(index)
    finally:
        index.close()
    assert result == key_of(one_pass(lines))


def test_read_range_splits_lines_as_the_scan_does(tmp_path: Path) -> None:
    lines = [b"a" * n for n in (0, 1, 5, 40, 3, 0, 17)]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        for batch in (1, 4, 7, 100):
            got = [line for part in read_range(fd, 0, path.stat().st_size, batch) for line in bytes(part).split(b"\n")]
            assert got == lines
        start = len(lines[0]) + len(lines[1]) + 2
        assert [x for p in read_range(fd, start, path.stat().st_size, 6) for x in bytes(p).split(b"\n")] == lines[2:]
        size = path.stat().st_size
        assert _last_line_end(fd, size) == size and _last_line_end(fd, size - 1) == size - 1 - len(lines[-1])
        assert _line_start_from(fd, start, size) == start, "a line's first byte is a start"
        assert _line_start_from(fd, start + 1, size) == start + len(lines[2]) + 1
        assert _line_start_from(fd, size - 1, size) is None
    finally:
        os.close(fd)
