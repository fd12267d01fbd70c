"""The JSONL reader on damaged input: every problem is reported with file, line and reason, the rest is read."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

from pipeline.traces.reader import BadLine, file_sha256, iter_records


def _read(path: Path, **kwargs: int) -> tuple[list[tuple[int, dict[str, object]]], list[BadLine]]:
    good: list[tuple[int, dict[str, object]]] = []
    bad: list[BadLine] = []
    for item in iter_records(path, **kwargs):  # type: ignore[arg-type]
        if isinstance(item, BadLine):
            bad.append(item)
        else:
            good.append(item)
    return good, bad


def test_good_lines_are_read_with_one_based_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"b": 2}\r\n   \n{"c": 3}\n')
    good, bad = _read(path)
    assert good == [(1, {"a": 1}), (3, {"b": 2}), (5, {"c": 3})]
    assert bad == []


def test_bad_json_line_is_reported_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2,,}\n[1, 2]\n"text"\n{"a": 5}\n')
    good, bad = _read(path)
    assert good == [(1, {"a": 1}), (5, {"a": 5})]
    assert [(b.line, b.reason) for b in bad] == [
        (2, "invalid JSON at column 9: unexpected character, expected a string key"),
        (3, "expected a JSON object, got list"),
        (4, "expected a JSON object, got str"),
    ]
    assert str(bad[0]) == f"{path}:2: invalid JSON at column 9: unexpected character, expected a string key"


def test_invalid_utf8_is_named_with_its_byte_position(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a": 1}\n{"obs": "caf\xc3\x28"}\n{"a": 3}\n')
    good, bad = _read(path)
    assert good == [(1, {"a": 1}), (3, {"a": 3})]
    assert [(b.line, b.reason) for b in bad] == [(2, "invalid UTF-8 at byte 12 of the line")]


def test_torn_last_line_is_reported_but_a_complete_one_without_newline_is_kept(tmp_path: Path) -> None:
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(b'{"a": 1}\n{"a": 2}\n{"kind": "tick", "epis')
    good, bad = _read(torn)
    assert good == [(1, {"a": 1}), (2, {"a": 2})]
    assert len(bad) == 1 and bad[0].line == 3
    assert (
        bad[0].reason == "torn last line (no newline at end of file): invalid JSON at column 23: unexpected end of data"
    )

    complete = tmp_path / "complete.jsonl"
    complete.write_bytes(b'{"a": 1}\n{"a": 2}')
    assert _read(complete) == ([(1, {"a": 1}), (2, {"a": 2})], [])


def test_lines_across_chunk_boundaries_are_joined(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    records = [{"i": i, "pad": "x" * (i * 37 % 300)} for i in range(2000)]
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    # a 4 KiB limit also makes 4 KiB chunks, so many lines straddle a chunk boundary
    good, bad = _read(path, max_line_bytes=4096)
    assert bad == []
    assert [obj for _, obj in good] == records


def test_a_50_mb_line_is_skipped_in_bounded_memory_and_the_next_line_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    huge = 50 * 2**20
    with open(path, "wb") as fh:
        fh.write(b'{"before": 1}\n')
        fh.write(b'{"observation": "' + b"x" * huge + b'"}\n')
        fh.write(b'{"after": 3}\n')
    tracemalloc.start()
    try:
        good, bad = _read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert good == [(1, {"before": 1}), (3, {"after": 3})]
    assert len(bad) == 1 and bad[0].line == 2
    assert bad[0].reason == f"line too long ({huge + 19} bytes > limit {16 * 2**20}); skipped"
    # never more than the 16 MiB limit plus a couple of 1 MiB chunks in memory, not the 50 MB line
    assert peak < 20 * 2**20


def test_a_huge_torn_last_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a": 1}\n' + b'{"x": "' + b"y" * 5000)
    good, bad = _read(path, max_line_bytes=1024)
    assert good == [(1, {"a": 1})]
    assert [(b.line, b.reason) for b in bad] == [
        (2, "line too long (5007 bytes > limit 1024) and torn (no newline at end of file); skipped")
    ]


def test_digest_sees_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    data = b'{"a": 1}\nnot json\n' + b'{"b": "' + b"z" * 3000 + b'"}\n{"c"'
    path.write_bytes(data)
    digest = hashlib.sha256()
    _ = list(iter_records(path, max_line_bytes=1000, digest=digest))
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest() == file_sha256(path)
