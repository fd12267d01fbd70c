"""The summary's name store (``pipeline.traces.summary_names.NameStore``) numbers and returns names exactly as the
dict and list it replaces would: any sequence of names (non-ASCII, lone surrogates, empty, very long, shared
prefixes, hash-tag collisions), read back by number, slice and iteration, found by name, cleared, compacted and
reused; and a summary compacted to exact-size arrays (``summary_columns.compact_summaries``) is unchanged."""

from __future__ import annotations

import pickle
import threading
from array import array
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.traces import summary_columns, summary_names, summary_native
from pipeline.traces.summary import _summarize_batch
from pipeline.traces.summary_names import NameStore
from tests.test_traces_summary_worker import trace_lines

_ANY_CHAR = st.characters(codec=None, categories=None)  # every code point, surrogates included
_NAME = st.one_of(
    st.text(alphabet=_ANY_CHAR, max_size=12),
    st.text(alphabet="ab\x1f", max_size=6),  # many equal prefixes and repeats
    st.builds(lambda prefix, n: prefix * n, st.sampled_from(["ep-", "é", "\U0001f600", "\x00"]), st.integers(0, 3000)),
    st.integers(0, 50).map(lambda i: f"ep-{i:07d}\x1fc{i % 7}"),
)


def _reference(names: list[str]) -> tuple[list[int], list[str]]:
    ids: dict[str, int] = {}
    order: list[str] = []
    numbers = []
    for name in names:
        if name not in ids:
            ids[name] = len(order)
            order.append(name)
        numbers.append(ids[name])
    return numbers, order


def _check(store: NameStore, names: list[str]) -> None:
    numbers, order = _reference(names)
    assert [store.intern(name) for name in names] == numbers
    assert len(store) == len(order)
    assert list(store) == order
    assert [store[i] for i in range(len(order))] == order
    assert [store[-i - 1] for i in range(len(order))] == order[::-1]
    assert store[1:] == order[1:]
    assert store[len(order) // 2 :] == order[len(order) // 2 :]
    assert store.names[::2] == order[::2]
    assert store == order
    for number, name in enumerate(order):
        assert store.find(name) == number
        assert store.number(name) == number
        assert name in store
    # found again after the recent-names dict is gone: the table alone answers
    store._recent.clear()
    assert [store.intern(name) for name in names] == numbers
    assert all(store.find(name) == number for number, name in enumerate(order))


@settings(max_examples=300, deadline=None)
@given(st.lists(_NAME, max_size=80), st.lists(_NAME, max_size=10))
def test_store_numbers_and_names_match_a_dict_and_list(names: list[str], absent: list[str]) -> None:
    store = NameStore()
    _check(store, names)
    for name in absent:
        if name not in names:
            assert store.find(name) is None
            assert name not in store
            with pytest.raises(KeyError):
                store.number(name)
    assert len(store) == len(set(names)), "looking up absent names added nothing"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(_NAME, max_size=30)), max_size=8), st.lists(_NAME, max_size=10))
def test_names_added_in_bulk_are_numbered_as_interned_one_by_one(
    steps: list[tuple[bool, list[str]]], absent: list[str]
) -> None:
    """``extend_new`` (a worker's new names, in bulk) between ``intern`` calls: the same numbers, names, lookups
    and table as interning each; the table grows past its load limit in one step."""
    store, reference = NameStore(), NameStore()
    for bulk, names in steps:
        if bulk:
            fresh = list(dict.fromkeys(n for n in names if n not in reference))  # new and distinct, as promised
            store.extend_new(fresh)
            for name in fresh:
                reference.intern(name)
        else:
            assert [store.intern(n) for n in names] == [reference.intern(n) for n in names]
        assert 3 * len(store) <= 2 * len(store._table)
    order = list(reference)
    assert list(store) == order and store == reference
    _check(store, order)
    for name in absent:
        if name not in order:
            assert store.find(name) is None


def test_bulk_names_grow_the_table_and_keep_non_ascii_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    store = NameStore()
    store.extend_new([f"ep-{i:07d}" for i in range(5000)])
    store.extend_new(["é", "\U0001f600x", "\udc80", ""])
    store.extend_new([f"ep-{i:07d}\x1fc{i % 3}" for i in range(20_000)])
    assert len(store._table) >= 1.5 * len(store)
    assert store[5000:5004] == ["é", "\U0001f600x", "\udc80", ""]
    assert store.find("ep-0004999") == 4999 and store.find("ep-0019999\x1fc1") == 5004 + 19_999
    monkeypatch.setattr(summary_names, "_TAG_MASK", 0)  # one probe chain: bulk inserts walk it too
    colliding = NameStore()
    colliding.extend_new(["a", "b", ""])
    assert colliding.intern("b") == 1 and colliding.intern("c") == 3 and colliding.find("") == 2


@settings(max_examples=100, deadline=None)
@given(st.lists(_NAME, max_size=40), st.lists(_NAME, max_size=40))
def test_clear_starts_numbering_again(first: list[str], second: list[str]) -> None:
    store = NameStore()
    _check(store, first)
    store.clear()
    assert len(store) == 0 and list(store) == []
    _check(store, second)


def test_many_names_grow_the_table_and_survive_recent_evictions() -> None:
    names = [f"ep-{i:07d}" for i in range(30_000)] + [f"ep-{i:07d}\x1fc{i % 5}" for i in range(0, 60_000, 2)]
    names += names[::-7]  # met again long after: the recent dict was emptied many times since
    store = NameStore()
    _check(store, names)
    assert len(store._table) >= 1.5 * len(store)
    assert store.nbytes() < 30 * len(store), "a compact store: bytes, offsets, tags and table only"


def test_equal_hash_tags_are_told_apart_by_their_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary_names, "_TAG_MASK", 0)  # every name gets tag 0: one long probe chain
    names = ["a", "b", "", "ab", "a\x00", "é", "e\u0301", "a", "", "é", "\udc80", "\udc80"]
    store = NameStore()
    _check(store, names)
    assert len(store) == len(set(names)) == 8


def test_out_of_range_and_equality() -> None:
    store = NameStore()
    for name in ("x", "y"):
        store.intern(name)
    with pytest.raises(IndexError):
        store[2]
    with pytest.raises(IndexError):
        store[-3]
    other = NameStore()
    other.intern("x")
    assert store != other
    other.intern("y")
    assert store == other and store == ["x", "y"] and store == ("x", "y") and store != ["x"]
    assert pickle.loads(pickle.dumps(store[:])) == ["x", "y"]


def test_a_reader_thread_sees_whole_names_while_the_writer_interns() -> None:
    names = [f"name-{i}-" + "z" * (i % 40) for i in range(50_000)]
    store = NameStore()
    done = threading.Event()
    bad: list[tuple[int, str]] = []

    def read() -> None:
        while not done.is_set():
            n = len(store)
            for i in range(max(0, n - 50), n):
                if store[i] != names[i]:
                    bad.append((i, store[i]))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for name in names:
            store.intern(name)
    finally:
        done.set()
        reader.join()
    assert bad == []
    assert list(store) == names


@settings(max_examples=100, deadline=None)
@given(st.lists(_NAME, max_size=60), st.lists(_NAME, max_size=60))
def test_compact_keeps_numbers_and_interning_goes_on(first: list[str], second: list[str]) -> None:
    store, plain = NameStore(), NameStore()
    numbers = [store.intern(name) for name in first]
    assert numbers == [plain.intern(name) for name in first]
    store.compact()
    assert store == plain and len(store._blob) == len(bytes(store._blob))
    assert [store.intern(name) for name in first + second] == [plain.intern(name) for name in first + second]
    assert list(store) == list(plain)


def _summary_key(s: Any) -> tuple[Any, ...]:
    return (
        *(bytes(getattr(s, name)) for name in summary_columns._COLUMN_NAMES),
        *(getattr(s, name).typecode for name in summary_columns._COLUMN_NAMES),
        list(s.episodes),
        list(s.chains),
        bytes(s.chain_episode),
        [bytes(a) for a in s.chain_lines],
        {flag: bytes(lines) for flag, lines in s.flag_lines.items()},
        s.flagged_upto,
        {ep: (st.runs, st.no_progress) for ep, st in s.episode_state.items()},
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace_lines(), st.data())
def test_compacted_summary_is_the_same_and_goes_on_the_same(lines: list[bytes], data: st.DataObject) -> None:
    """``compact_summaries`` (run once a summary is complete) changes no value, and summarizing more lines afterwards
    (a followed file grows) gives what one pass without it gives; a transient summary (a worker's) gives the same."""
    cut = data.draw(st.integers(0, len(lines)))
    whole = summary_columns._Summaries()
    _summarize_batch(whole, 0, lines)
    part = summary_columns._Summaries()
    _summarize_batch(part, 0, lines[:cut])
    before = _summary_key(part)
    summary_columns.compact_summaries(part)
    assert _summary_key(part) == before
    _summarize_batch(part, cut, lines[cut:])
    assert _summary_key(part) == _summary_key(whole)
    transient = summary_columns._Summaries(transient=True)  # (a worker's: dense columns, names in a list and dict)
    _summarize_batch(transient, 0, lines[:cut])
    _summarize_batch(transient, cut, lines[cut:])
    assert isinstance(transient.episodes, summary_columns.ListNames)
    assert _summary_key(transient) == _summary_key(whole)


def test_end_offsets_widen_past_4_gb_of_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary_names, "_U32_MAX", 10)  # (as if the blob had passed 4 GB after 10 bytes)
    names = [f"name-{i}" for i in range(50)] + ["name-3", "", "é"]
    store = NameStore()
    _check(store, names)
    assert store._ends.typecode == "q"


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 6).map(lambda k: 1 << k),
    st.data(),
)
def test_names_placed_in_c_fill_the_table_as_the_python_loop_does(size: int, data: st.DataObject) -> None:
    """``_place`` in C (``place_names``) against its Python loop: the same slots for any tags (colliding, wrapping
    around the end), any slots taken before and any first number; a table with too few free slots is refused and
    left as it was (the Python loop would probe for ever)."""
    native = summary_native.load()
    if native is None:
        pytest.skip("the summary's C module is not built here")
    table = array("i", data.draw(st.lists(st.sampled_from([-1, 7]), min_size=size, max_size=size)))
    free = table.count(-1)
    tags = data.draw(st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 3), max_size=free + 2))
    first = data.draw(st.integers(0, 2**31 - 1 - len(tags)))
    in_c = array("i", table)
    if len(tags) > free:
        with pytest.raises(ValueError, match="too few free slots"):
            native.place_names(in_c, array("I", tags), first)
        assert in_c == table
        return
    summary_names._place(in_c, tags, first)  # (a list: made an array('I') for C)
    in_python = array("i", table)
    mask = size - 1
    for number, tag in enumerate(tags, first):
        slot = tag & mask
        while in_python[slot] >= 0:
            slot = (slot + 1) & mask
        in_python[slot] = number
    assert in_c == in_python


def test_place_names_refuses_buffers_of_another_type() -> None:
    native = summary_native.load()
    if native is None:
        pytest.skip("the summary's C module is not built here")
    with pytest.raises(TypeError, match="'i' items"):
        native.place_names(array("I", [0] * 4), array("I"), 0)
    with pytest.raises(TypeError, match="'I' items"):
        native.place_names(array("i", [-1] * 4), array("i", [1]), 0)
    with pytest.raises(ValueError, match="power of two"):
        native.place_names(array("i", [-1] * 3), array("I", [1]), 0)
