"""The summary's sparse chain column (``pipeline.traces.summary_sparse.SparseColumn``) reads, appends and serializes
exactly as the dense ``array('i')`` it replaces, whichever way the values come (lists, a worker's int32 bytes),
and finds a chain's lines in a window as a scan of the dense column would."""

from __future__ import annotations

from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.traces import summary_sparse
from pipeline.traces.summary_sparse import NO_ID, SparseColumn

_VALUE = st.one_of(st.just(NO_ID), st.just(NO_ID), st.integers(0, 6), st.integers(-(2**31), 2**31 - 1))
_WAYS = st.sampled_from(["list", "bytes", "bytes-numpy"])
"""How a batch comes: a list (``extend``), or a worker's bytes picked out in C or with numpy (``frombytes``)."""
_BATCHES = st.lists(st.tuples(_WAYS, st.lists(_VALUE, max_size=40)), max_size=8)


def _frombytes(column: Any, data: bytes, *, numpy: bool) -> None:
    """``column.frombytes(data)``; with ``numpy``, the way taken without the summary's C module."""
    with pytest.MonkeyPatch.context() as m:
        if numpy:
            m.setattr(summary_sparse, "_native", lambda: None)
        column.frombytes(data)


def _fill(batches: list[tuple[str, list[int]]]) -> tuple[SparseColumn, array[int]]:
    sparse, dense = SparseColumn(), array("i")
    for way, values in batches:
        if way != "list":
            _frombytes(sparse, array("i", values).tobytes(), numpy=way == "bytes-numpy")
        else:
            sparse.extend(values)
        dense.extend(values)
    return sparse, dense


@settings(max_examples=300, deadline=None)
@given(_BATCHES, st.data())
def test_reads_as_the_dense_column(batches: list[tuple[str, list[int]]], data: st.DataObject) -> None:
    sparse, dense = _fill(batches)
    assert len(sparse) == len(dense)
    assert [sparse[i] for i in range(len(dense))] == dense.tolist()
    assert [sparse[-i - 1] for i in range(len(dense))] == dense.tolist()[::-1]
    assert sparse.tobytes() == dense.tobytes() == bytes(sparse)
    start = data.draw(st.integers(-5, len(dense) + 5))
    stop = data.draw(st.integers(-5, len(dense) + 5))
    step = data.draw(st.sampled_from([None, 1, 2, 3]))
    assert sparse[start:stop:step] == dense[start:stop:step]
    assert len(sparse.rows) == len(sparse.values) == sum(v != NO_ID for v in dense)
    for bad in (len(dense), -len(dense) - 1):
        with pytest.raises(IndexError):
            sparse[bad]
    sparse.compact()
    assert sparse.tobytes() == dense.tobytes()


@settings(max_examples=300, deadline=None)
@given(_BATCHES, st.integers(0, 6), st.integers(-3, 90), st.integers(-3, 90), st.booleans())
def test_lines_with_is_a_scan_of_the_window(
    batches: list[tuple[str, list[int]]], value: int, first: int, last: int, numpy_scan: bool
) -> None:
    sparse, dense = _fill(batches)
    if numpy_scan:
        summary_sparse.SCAN_NUMPY, saved = 0, summary_sparse.SCAN_NUMPY
    try:
        found = sparse.lines_with(value, first, last)
    finally:
        if numpy_scan:
            summary_sparse.SCAN_NUMPY = saved
    assert found.typecode == "q"
    assert found.tolist() == [i for i, v in enumerate(dense) if first <= i <= last and v == value]


@pytest.mark.parametrize("numpy", [False, True])
def test_emptied_whole_only_and_lines_past_2_31_widen_the_rows(numpy: bool) -> None:
    sparse = SparseColumn()
    sparse.extend([NO_ID, 3, NO_ID])
    with pytest.raises(TypeError):
        del sparse[1:]
    del sparse[:]
    assert len(sparse) == 0 and sparse.tobytes() == b""
    sparse._len = 2**31 - 2  # (as if that many lines were in no chain)
    sparse.extend([4, NO_ID, 5])
    _frombytes(sparse, array("i", [NO_ID, 6]).tobytes(), numpy=numpy)
    assert sparse.rows.typecode == "q"
    assert sparse.rows.tolist() == [2**31 - 2, 2**31, 2**31 + 2]
    assert (sparse[2**31 - 2], sparse[2**31 - 1], sparse[2**31], sparse[-1]) == (4, NO_ID, 5, 6)
    assert sparse.lines_with(5, 0, 2**32).tolist() == [2**31]


def test_a_chained_line_costs_8_bytes_and_an_unchained_one_nothing() -> None:
    sparse = SparseColumn()
    sparse.extend(([NO_ID] * 9 + [7]) * 10_000)
    assert len(sparse) == 100_000
    sparse.compact()
    assert sparse.nbytes() == 8 * 10_000
