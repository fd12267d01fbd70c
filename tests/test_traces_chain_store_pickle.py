"""``ChainStore`` pickles as a few objects (``trace stats``' second process sends its half's chains so) and
unpickles to the same store: every column and total equal, repeated values shared, ids of any characters."""

from __future__ import annotations

import math
import pickle
import pickletools
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.traces.chains import ChainStore

_ANY_TEXT = st.text(alphabet=st.characters(codec=None, categories=None), max_size=12)  # NUL, surrogates included


@st.composite
def stores(draw: st.DrawFn) -> ChainStore:
    n = draw(st.integers(0, 40))
    store = ChainStore()
    store.ids = draw(st.lists(_ANY_TEXT, min_size=n, max_size=n))
    pool = draw(st.lists(_ANY_TEXT, min_size=1, max_size=4))
    store.episodes = [draw(st.sampled_from(pool)) for _ in range(n)]
    maybe = st.one_of(st.none(), st.sampled_from(["Timeout", "SchemaViolation", ""]))
    store.failure_classes = draw(st.lists(maybe, min_size=n, max_size=n))
    store.mechanisms = draw(st.lists(maybe, min_size=n, max_size=n))
    store.outcomes = array("b", draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    store.seconds = array("d", draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n)))
    ticks = draw(st.lists(st.lists(st.integers(0, 10**6), min_size=1, max_size=4), min_size=n, max_size=n))
    for chain in ticks:
        store.ticks.extend(chain)
        store.tick_ends.append(len(store.ticks))
    store.by_outcome = [store.outcomes.count(k) for k in range(3)]
    store.recover_ticks = draw(st.integers(0, 10**6))
    store.recover_ticks_n = draw(st.integers(0, n))
    store.recover_seconds = draw(st.floats(0, 1e6))
    store.recover_seconds_n = draw(st.integers(0, n))
    return store


def _same(a: object, b: object) -> bool:
    if isinstance(a, array) and isinstance(b, array) and a.typecode == "d":
        return a.typecode == b.typecode and all(
            (math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True)
        )
    return type(a) is type(b) and a == b


@settings(max_examples=150, deadline=None)
@given(stores())
def test_a_chain_store_unpickles_to_the_same_store(store: ChainStore) -> None:
    back = pickle.loads(pickle.dumps(store, pickle.HIGHEST_PROTOCOL))
    assert type(back) is ChainStore
    assert vars(back).keys() == vars(store).keys()
    for name, value in vars(store).items():
        assert _same(getattr(back, name), value), name
    first: dict[str, str] = {}
    for episode in back.episodes:  # (a repeated episode is one string again, as in the store it came from)
        assert first.setdefault(episode, episode) is episode
    assert len(back) == len(store)
    if len(store):
        assert back[len(store) - 1] == store[len(store) - 1]


def test_many_chains_pickle_as_few_objects() -> None:
    store = ChainStore()
    n = 20_000
    store.ids = [f"c{i}" for i in range(n)]
    store.episodes = [f"ep-{i // 8:07d}" for i in range(n)]
    store.failure_classes = [("Timeout", None, "SchemaViolation")[i % 3] for i in range(n)]
    store.mechanisms = [None] * n
    store.outcomes = array("b", [0] * n)
    store.seconds = array("d", [1.0] * n)
    store.ticks = array("q", range(n))
    store.tick_ends = array("q", range(1, n + 1))
    data = pickle.dumps(store, pickle.HIGHEST_PROTOCOL)
    plain = pickle.dumps(vars(store), pickle.HIGHEST_PROTOCOL)  # (each id, each distinct episode: an object)

    def memoized(pickled: bytes) -> int:  # objects the pickler kept in its memo
        return sum(op.name == "MEMOIZE" for op, _, _ in pickletools.genops(pickled))

    assert memoized(data) < n // 8 + 100 < n < memoized(plain)  # (the distinct episodes, and a few more)
    assert len(data) < 0.8 * len(plain)
    assert pickle.loads(data).ids == store.ids
