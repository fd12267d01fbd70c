"""The second summary worker starts on open with a byte range (it finds its lines itself while the viewer's newline
scan goes on), and the join gives exactly the summary of one pass: lines longer than a batch, a last line without
its newline, a boundary falling inside a line, runs open across the boundary."""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.traces import index_workers as workers_module
from pipeline.traces.index import TraceIndex
from pipeline.traces.index_workers import _last_line_end, _line_start_from
from pipeline.traces.worker_read import mapped, read_range
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


@pytest.mark.parametrize("mapping", [True, False])
def test_read_range_splits_lines_as_the_scan_does(tmp_path: Path, mapping: bool) -> None:
    """Mapped (the worker's way) or read (where a file cannot be mapped): the same blocks, ranges starting anywhere
    (past a page's first byte too), lines longer than a batch and than the 4 KiB looked back for the last newline."""
    lines = [b"a" * n for n in (0, 1, 5, 40, 3, 0, 17)]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        for batch in (1, 4, 7, 100):
            parts = read_range(fd, 0, path.stat().st_size, batch, mapping=mapping)
            assert [line for part in parts for line in bytes(part).split(b"\n")] == lines
        start = len(lines[0]) + len(lines[1]) + 2
        parts = read_range(fd, start, path.stat().st_size, 6, mapping=mapping)
        assert [x for p in parts for x in bytes(p).split(b"\n")] == lines[2:]
        size = path.stat().st_size
        assert _last_line_end(fd, size) == size and _last_line_end(fd, size - 1) == size - 1 - len(lines[-1])
        assert _line_start_from(fd, start, size) == start, "a line's first byte is a start"
        assert _line_start_from(fd, start + 1, size) == start + len(lines[2]) + 1
        assert _line_start_from(fd, size - 1, size) is None
    finally:
        os.close(fd)


@pytest.mark.parametrize("mapping", [True, False])
def test_read_range_reads_ranges_of_pages_and_long_lines(tmp_path: Path, mapping: bool) -> None:
    lines = [
        bytes([97 + i % 26]) * n for i, n in enumerate([300] * 40 + [5000, 9000, 12, 4095, 4096, 4097] + [200] * 60)
    ]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    size = path.stat().st_size
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    fd = os.open(path, os.O_RDONLY)
    try:
        for first in (0, 13, 40, 41, 44, 70):  # (starts past 4096 bytes: mappings from a page before the range)
            for batch in (512, 4096, 6000, 1 << 16):
                # (each block taken as it comes: it is valid until the next is asked for)
                blocks = [bytes(p) for p in read_range(fd, starts[first], size, batch, mapping=mapping)]
                assert [x for p in blocks for x in p.split(b"\n")] == lines[first:], (first, batch)
                assert all(len(p) <= batch for p in blocks if b"\n" in p), "whole lines, a batch at most"
    finally:
        os.close(fd)


def test_a_mapped_block_is_cut_at_the_files_end_and_the_file_is_not_copied(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"x" * 10_000 + b"\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        view = mapped(fd, 5000, 20_000)
        assert view is not None and len(view) == 5001 and bytes(view[-2:]) == b"x\n"
        assert isinstance(view.obj, mmap.mmap), "mapped from the page cache, not read"
        past = mapped(fd, 20_000, 30_000)
        assert past is not None and bytes(past) == b"", "past the end: nothing"
    finally:
        os.close(fd)


def test_a_worker_whose_mapped_file_is_cut_short_dies_without_a_core_file(tmp_path: Path) -> None:
    """A file cut short under a mapping: the page past its end raises SIGBUS. The worker dies of it (the viewer
    summarizes again in its own process, as after any lost worker) and leaves no core file behind."""
    code = (
        "import os, resource, sys\n"
        "from pipeline.traces.worker_read import mapped, no_core_file\n"
        "hard = resource.getrlimit(resource.RLIMIT_CORE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))  # (core files on, as a user may have them)\n"
        "if sys.argv[2] == 'worker':\n"
        "    no_core_file()\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "view = mapped(fd, 0, 100_001)\n"
        "os.truncate(sys.argv[1], 10)\n"
        "print(bytes(view[90_000:90_010]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def dies(where: Path, how: str) -> list[str]:
        """The mapped file cut short in a process in ``where``: it died of SIGBUS; the core files left there."""
        where.mkdir()
        path = where / "t.jsonl"
        path.write_bytes(b"y" * 100_000 + b"\n")
        done = subprocess.run([sys.executable, "-c", code, str(path), how], cwd=where, env=env, capture_output=True)
        assert done.returncode == -signal.SIGBUS and done.stdout == b"", done.stderr
        return [p.name for p in where.iterdir() if p.name.startswith("core")]

    assert dies(tmp_path / "worker", "worker") == []
    if Path("/proc/sys/kernel/core_pattern").read_text().strip() in ("core", "core.%p"):
        # where the kernel writes core files into the working directory, this one would have left one
        assert dies(tmp_path / "plain", "plain"), "(the check above could not have failed)"
