"""Interned names of the viewer's summary (episode ids, chain keys) without a Python string per name.

A 1 GB trace has ~60,000 episodes and ~100,000 chains; as a list of strings plus a dict for interning they took
~16 MB of the viewer's memory (a short ``str`` is 64 bytes, a dict entry ~40 more). Here every name is UTF-8 bytes in
one blob with its end offset in an array, and the lookup is an open-addressing table of name numbers keyed by the
name's hash, each hit checked against the blob: ~25 bytes a name for the names of a 1 GB trace.

Numbers and names are those a dict and a list would give: names are numbered from 0 in order of first ``intern``
and read back equal (any string, lone surrogates included, round-trips through ``surrogatepass``).

Threads: one thread interns (the summary pass); others may read ``names[i]`` and ``len`` meanwhile (a name's bytes
are in the blob before its end offset is appended, and every attribute a reader uses is replaced, not edited, where
it matters).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from itertools import accumulate, islice
from typing import overload

_TAG_MASK = 0xFFFFFFFF
_U32_MAX = 0xFFFFFFFF
_EMPTY = -1
_FIRST_SLOTS = 8
RECENT_MAX = 4096
"""Names interned lately kept as strings in a small dict, so a name met again soon (the ticks of a chain, a few
lines apart) is found at dict speed; the dict is emptied when it reaches this size."""


def tag_of(name: str) -> int:
    """The hash tag a name is filed under (the low 32 bits of its hash, in this process)."""
    return hash(name) & _TAG_MASK


def tags_of(names: Sequence[str]) -> list[int]:
    """``tag_of`` of each of ``names`` (one call for them all)."""
    return [hash(name) & _TAG_MASK for name in names]


def _table_of(tags: array[int], size: int) -> array[int]:
    """An open-addressing table of ``size`` slots (a power of two) holding name numbers by their hash tags."""
    table = array("i", [_EMPTY]) * size
    _place(table, tags, 0)
    return table


def _place(table: array[int], tags: Sequence[int], first: int) -> None:
    """Put names ``first, first + 1, ...`` (their hash ``tags``) in the free slots of ``table`` (linear probing): in C
    where the summary's C loop is built (a 1 GB trace's ~170,000 names took ~0.15 s here, in the join of the second
    summary worker's range), else the same loop in Python."""
    from pipeline.traces.summary_native import load  # (here: that module imports this one)

    native = load()
    if native is not None:
        native.place_names(table, tags if isinstance(tags, array) and tags.typecode == "I" else array("I", tags), first)
        return
    mask = len(table) - 1
    for number, tag in enumerate(tags, first):
        slot = tag & mask
        while table[slot] >= 0:
            slot = (slot + 1) & mask
        table[slot] = number


class NameStore(Sequence[str]):
    """Strings stored once, numbered in order of first appearance (``intern``); ``store[i]`` is name ``i``."""

    __slots__ = ("_blob", "_ends", "_last", "_recent", "_table", "_tags", "names")

    def __init__(self) -> None:
        self._blob = bytearray()
        self._ends = array("I")
        """End offset in ``_blob`` of each name (its start is the previous name's end); widened to 64 bits past
        4 GB of names."""
        self._tags = array("I")
        """The low 32 bits of each name's hash: where it goes in ``_table``, and a cheap check before the blob's."""
        self._table = array("i", [_EMPTY]) * _FIRST_SLOTS
        """Open addressing (linear probing) over a power-of-two number of slots, at most 2/3 full: name numbers."""
        self._recent: dict[str, int] = {}
        self._last: tuple[int, str] = (-1, "")
        """The name read last, by number (consecutive reads of one name decode it once)."""
        self.names: NameStore = self
        """The names as a sequence (the store itself, as an attribute: read in the summary's hot loop), for readers
        of the list this replaces: ``names[i]``, ``names[a:b]`` (a list), ``len(names)``."""

    # --- interning ------------------------------------------------------------------------------------------
    def intern(self, name: str) -> int:
        """The number of ``name``, given the next number if it is new."""
        recent = self._recent
        found = recent.get(name)
        if found is not None:
            return found
        data = name.encode("utf-8", "surrogatepass")
        tag = hash(name) & _TAG_MASK
        slot, found = self._probe(data, tag)
        if found < 0:  # new: its bytes, tag and slot, and its end offset last (readers take ``len`` from those)
            ends = self._ends
            found = len(ends)
            blob = self._blob
            blob += data
            if len(blob) > _U32_MAX and ends.typecode == "I":
                ends = self._ends = array("q", ends)
            self._tags.append(tag)
            self._table[slot] = found
            ends.append(len(blob))
            if 3 * found + 3 > 2 * len(self._table):
                self._grow()
        if len(recent) >= RECENT_MAX:
            recent.clear()
        recent[name] = found
        return found

    def extend_new(self, names: Sequence[str], tags: Sequence[int] | None = None) -> None:
        """Number ``names`` next, each known to be new here and distinct (what a worker met after the state it was
        given): what ``intern`` of each does, with one encode and one pass over the table for them all. ``tags``:
        their hash tags (``tag_of``), where the caller has them already."""
        if not names:
            return
        start = len(self._ends)
        joined = "".join(names)
        data = joined.encode("utf-8", "surrogatepass")
        if len(data) == len(joined):  # ASCII: a name's bytes are its characters
            sizes: Sequence[int] = list(map(len, names))
        else:
            sizes = [len(name.encode("utf-8", "surrogatepass")) for name in names]
        blob = self._blob
        base = len(blob)
        blob += data
        ends = self._ends
        if len(blob) > _U32_MAX and ends.typecode == "I":
            ends = self._ends = array("q", ends)
        tag_array = array("I", tags_of(names) if tags is None else tags)
        self._tags.extend(tag_array)
        size = len(self._table)
        if 3 * (start + len(names)) > 2 * size:
            while 3 * (start + len(names)) > 2 * size:
                size *= 2
            self._table = _table_of(self._tags, size)
        else:
            _place(self._table, tag_array, start)
        # last: readers take ``len`` from the end offsets (every name counted there is complete)
        ends.extend(islice(accumulate(sizes, initial=base), 1, None))

    def tags(self) -> array[int]:
        """Each name's hash tag (``tag_of``), by number (read only: the store's own array)."""
        return self._tags

    def find(self, name: str) -> int | None:
        """The number of ``name``, or None when it was never interned."""
        found = self._recent.get(name)
        if found is not None:
            return found
        found = self._probe(name.encode("utf-8", "surrogatepass"), hash(name) & _TAG_MASK)[1]
        return found if found >= 0 else None

    def number(self, name: str) -> int:
        """The number of ``name`` (KeyError when it was never interned)."""
        found = self.find(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def _probe(self, data: bytes, tag: int) -> tuple[int, int]:
        """(slot, number) of the name with these bytes and hash tag; number -1 and its empty slot when absent."""
        table = self._table
        mask = len(table) - 1
        tags = self._tags
        ends = self._ends
        blob = self._blob
        slot = tag & mask
        while True:
            number = table[slot]
            if number < 0:
                return slot, -1
            if tags[number] == tag and blob[ends[number - 1] if number else 0 : ends[number]] == data:
                return slot, number
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        self._table = _table_of(self._tags, 2 * len(self._table))

    def clear(self) -> None:
        """Forget every name (numbers start from 0 again)."""
        self._blob = bytearray()
        self._ends = array("I")
        self._tags = array("I")
        self._table = array("i", [_EMPTY]) * _FIRST_SLOTS
        self._recent = {}
        self._last = (-1, "")

    def compact(self) -> None:
        """Buffers copied to their exact size and the recent names let go (when no more names are expected soon:
        interning goes on as before, numbers unchanged)."""
        self._blob = bytearray(self._blob)  # before the end offsets: a reader takes ``len`` from those
        self._tags = array(self._tags.typecode, self._tags)
        self._ends = array(self._ends.typecode, self._ends)
        self._recent = {}

    # --- reading --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        last = self._last
        if last[0] == index:  # (a slice is never equal to a number) the summary reads one episode's name per tick
            return last[1]
        if isinstance(index, slice):
            return self._slice(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("name number out of range")
        return self._name(index)

    def _slice(self, index: slice) -> list[str]:
        """The names of a slice: the bytes of a run of names decoded at once and cut at their ends where they are
        ASCII (a worker's or a local pass's new names, every batch: ~230,000 names a GB)."""
        start, stop, step = index.indices(len(self))
        if step != 1 or stop - start < 2:
            return [self._name(i) for i in range(start, stop, step)]
        ends = self._ends
        base = ends[start - 1] if start else 0
        text = self._blob[base : ends[stop - 1]].decode("utf-8", "surrogatepass")
        if len(text) != ends[stop - 1] - base:  # (not ASCII: a character is not a byte)
            return [self._name(i) for i in range(start, stop)]
        cuts = [end - base for end in ends[start:stop]]
        return [text[a:b] for a, b in zip([0, *cuts], cuts, strict=False)]

    def _name(self, number: int) -> str:
        last = self._last
        if last[0] == number:
            return last[1]
        ends = self._ends
        name = self._blob[ends[number - 1] if number else 0 : ends[number]].decode("utf-8", "surrogatepass")
        self._last = (number, name)
        return name

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self._name(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NameStore):
            return len(self) == len(other) and self._blob == other._blob and list(self._ends) == list(other._ends)
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NameStore({list(self)!r})"

    def nbytes(self) -> int:
        """Bytes held by the store's buffers (the blob, offsets, tags and table; the recent-names dict aside)."""
        return (
            len(self._blob)
            + self._ends.itemsize * len(self._ends)
            + self._tags.itemsize * len(self._tags)
            + self._table.itemsize * len(self._table)
        )
