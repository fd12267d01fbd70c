"""``Offsets``, the line ends 4 bytes a line: the same reads as a plain list of the offsets, widened past 4 GiB."""

from __future__ import annotations

import bisect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.traces import index_scan
from pipeline.traces.index_scan import Offsets


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 4 offsets, so a few dozen cross many block boundaries."""
    monkeypatch.setattr(index_scan, "BLOCK_SHIFT", 2)
    monkeypatch.setattr(index_scan, "_BLOCK_MASK", 3)


gaps = st.lists(st.one_of(st.integers(0, 300), st.integers(2**31, 2**33)), min_size=0, max_size=60)
cuts = st.lists(st.integers(0, 3), min_size=1, max_size=8)


def _build(values: list[int], cuts: list[int]) -> Offsets:
    """``values`` appended by the three ways the scan appends (one, a list, a numpy array), in turns."""
    o = Offsets()
    i, turn = 0, 0
    while i < len(values):
        n = cuts[turn % len(cuts)] * 5 + 1
        piece = values[i : i + n]
        way = turn % 3
        if way == 0:
            for v in piece:
                o.append(v)
        elif way == 1:
            o.extend(piece)
        else:
            o.extend_numpy(np, np.array(piece, dtype=np.int64))
        i += len(piece)
        turn += 1
    return o


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=gaps, cuts=cuts, probes=st.lists(st.integers(-5, 2**36), max_size=10), start=st.integers(1, 2**40))
def test_offsets_read_as_the_list(
    small_blocks: None, gaps: list[int], cuts: list[int], probes: list[int], start: int
) -> None:
    values = []
    at = start
    for gap in gaps:
        at += gap
        values.append(at)
    o = _build(values, cuts)
    assert len(o) == len(values)
    assert o.tolist() == values
    assert [o[i] for i in range(len(values))] == values
    if values:
        assert o[-1] == values[-1]
        assert o.rel.typecode == ("q" if max(b - a for a, b in _block_spans(values, 4)) > 2**32 - 1 else "I")
    n = len(values)
    for x in probes + values + [v + 1 for v in values] + [v - 1 for v in values]:
        for lo, hi in ((0, n), (0, None), (n // 3, n), (n // 4, n // 2), (n, n)):
            want_hi = n if hi is None else hi
            assert o.bisect_right(x, lo, hi) == bisect.bisect_right(values, x, lo, want_hi)
            assert o.bisect_left(x, lo, hi) == bisect.bisect_left(values, x, lo, want_hi)
        assert bisect.bisect_right(o, x) == bisect.bisect_right(values, x)


def _block_spans(values: list[int], size: int) -> list[tuple[int, int]]:
    return [(values[k], values[min(k + size, len(values)) - 1]) for k in range(0, len(values), size)]


def test_full_size_blocks_keep_four_bytes_a_line() -> None:
    """Three blocks of real size, offsets past 4 GiB in all: still 4 bytes each, the same values."""
    values = np.arange(3 * 2**16, dtype=np.int64) * 300 + 5 * 2**32
    o = Offsets()
    o.extend_numpy(np, values[:100_000])
    o.extend(values[100_000:150_000].tolist())
    for v in values[150_000:].tolist():
        o.append(v)
    assert o.rel.typecode == "I" and o.rel.itemsize == 4
    assert len(o.bases) == 3
    assert o.tolist() == values.tolist()
    assert o.bisect_right(int(values[70_000])) == 70_001
    assert o.bisect_left(int(values[140_000]) + 1) == 140_001
