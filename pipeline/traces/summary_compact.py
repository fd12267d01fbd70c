"""What the compact per-line columns of the summary share (``summary_runs.RunColumn``, the episode column kept as
runs; ``summary_sparse.SparseColumn``, the chain column kept for chained lines only): they read and append like the
plain ``array('i')`` they stand for, so the summary pass, its workers and their deltas need not know them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from array import array
from collections.abc import Iterable
from typing import overload

INT32_MAX = 2**31 - 1


class CompactColumn(ABC):
    """Per-line int32 values kept in some smaller form; ``_dense`` and ``_value`` read it back."""

    __slots__ = ("_len",)

    typecode = "i"
    """As the dense column: a worker's delta carries it as int32 bytes."""
    itemsize = 4

    def __init__(self) -> None:
        self._len = 0

    def __len__(self) -> int:
        return self._len

    @abstractmethod
    def extend(self, values: Iterable[int]) -> None:
        """Append one value per line."""

    @abstractmethod
    def clear(self) -> None: ...

    @abstractmethod
    def _dense(self, start: int, stop: int) -> array[int]:
        """The values of lines ``start`` to ``stop`` (excluded) as a plain array."""

    @abstractmethod
    def _value(self, index: int) -> int:
        """The value of line ``index`` (in range)."""

    def append(self, value: int) -> None:
        self.extend([value])

    def _extend_bytes(self, data: bytes) -> None:
        """``frombytes`` without numpy: the int32 values through ``extend``."""
        dense = array("i")
        dense.frombytes(data)
        self.extend(dense.tolist())

    def __delitem__(self, index: slice) -> None:
        """Only ``del col[:]`` (emptied, as a worker does after each batch)."""
        if not isinstance(index, slice) or index.indices(self._len) != (0, self._len, 1):
            raise TypeError(f"a {type(self).__name__} is only ever emptied whole: del col[:]")
        self.clear()

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> array[int]: ...

    def __getitem__(self, index: int | slice) -> int | array[int]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._len)
            dense = self._dense(start, max(start, stop))
            return dense if step == 1 else dense[::step]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("line out of range")
        return self._value(index)

    def tobytes(self) -> bytes:
        """Every line's value as dense int32 bytes."""
        return self._dense(0, self._len).tobytes()

    def __bytes__(self) -> bytes:
        return self.tobytes()
