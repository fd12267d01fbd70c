"""The summary's episode column (``pipeline.traces.summary_runs.RunColumn``, runs of equal values, dense once the
runs are short) reads, appends and serializes exactly as the dense ``array('i')`` it replaces, whichever way the
values come (lists, a worker's int32 bytes), before and after it turns dense."""

from __future__ import annotations

import itertools
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.traces import summary_runs
from pipeline.traces.summary_runs import RunColumn

_RUN = st.tuples(st.one_of(st.just(-1), st.integers(0, 4), st.integers(-(2**31), 2**31 - 1)), st.integers(1, 30))
_BATCH = st.lists(_RUN, max_size=8).map(lambda runs: [value for value, n in runs for _ in range(n)])
_WAYS = st.sampled_from(["list", "bytes", "bytes-numpy"])
"""How a batch comes: a list (``extend``), or a worker's bytes whose runs are found in C or with numpy."""
_BATCHES = st.lists(st.tuples(_WAYS, _BATCH), max_size=8)


def _frombytes(column: Any, data: bytes, *, numpy: bool) -> None:
    """``column.frombytes(data)``; with ``numpy``, the way taken without the summary's C module."""
    with pytest.MonkeyPatch.context() as m:
        if numpy:
            m.setattr(summary_runs, "_native", lambda: None)
        column.frombytes(data)


def _fill(batches: list[tuple[str, list[int]]], column: RunColumn, dense: array[int]) -> None:
    for way, values in batches:
        if way != "list":
            _frombytes(column, array("i", values).tobytes(), numpy=way == "bytes-numpy")
        else:
            column.extend(values)
        dense.extend(values)
        assert len(column) == len(dense)


def _same(column: RunColumn, dense: array[int], data: st.DataObject) -> None:
    assert len(column) == len(dense)
    assert [column[i] for i in range(len(dense))] == dense.tolist()
    assert [column[-i - 1] for i in range(len(dense))] == dense.tolist()[::-1]
    assert column.tobytes() == dense.tobytes() == bytes(column)
    start = data.draw(st.integers(-5, len(dense) + 5))
    stop = data.draw(st.integers(-5, len(dense) + 5))
    step = data.draw(st.sampled_from([None, 1, 2, 3]))
    assert column[start:stop:step] == dense[start:stop:step]
    for bad in (len(dense), -len(dense) - 1):
        with pytest.raises(IndexError):
            column[bad]


@settings(max_examples=300, deadline=None)
@given(_BATCHES, _BATCHES, st.sampled_from([0, 8, 4096]), st.data())
def test_reads_as_the_dense_column(
    first: list[tuple[str, list[int]]],
    second: list[tuple[str, list[int]]],
    slack: int,
    data: st.DataObject,
) -> None:
    saved, summary_runs.DENSE_SLACK = summary_runs.DENSE_SLACK, slack  # 0: turns dense as soon as runs are short
    try:
        column, dense = RunColumn(), array("i")
        _fill(first, column, dense)
        _same(column, dense, data)
        column.compact()
        _same(column, dense, data)
        _fill(second, column, dense)
        _same(column, dense, data)
    finally:
        summary_runs.DENSE_SLACK = saved
    runs = 1 + sum(a != b for a, b in itertools.pairwise(dense))
    if not column.dense:
        assert column.nbytes() == 8 * runs if dense else column.nbytes() == 0


def test_long_runs_cost_8_bytes_a_run_and_interleaving_turns_dense() -> None:
    column = RunColumn()
    column.extend([i // 40 for i in range(400_000)])  # 10,000 episodes of 40 lines
    column.compact()
    assert not column.dense and column.nbytes() == 8 * 10_000
    interleaved = RunColumn()
    interleaved.frombytes(array("i", [i % 3 for i in range(100_000)]).tobytes())
    assert interleaved.dense and interleaved.nbytes() == 4 * 100_000
    assert interleaved[99_999] == 99_999 % 3


@pytest.mark.parametrize("numpy", [False, True])
def test_emptied_whole_only_and_lines_past_2_31_widen_the_starts(numpy: bool) -> None:
    column = RunColumn()
    column.extend([1, 1, 2])
    with pytest.raises(TypeError):
        del column[1:]
    del column[:]
    assert len(column) == 0 and column.tobytes() == b""
    column.extend([7])
    column._len = 2**31 - 1  # (as if that many lines of episode 7 had come)
    column.extend([7, 8, 8])
    _frombytes(column, array("i", [8, 9]).tobytes(), numpy=numpy)
    starts, _ = column._store  # type: ignore[misc]
    assert starts.typecode == "q" and starts.tolist() == [0, 2**31, 2**31 + 3]
    assert (column[2**31 - 1], column[2**31], column[2**31 + 2], column[-1]) == (7, 8, 8, 9)
