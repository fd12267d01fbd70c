"""A range of a trace summarized on its own (a second worker, from an empty state) joined onto the summary of
everything before it, with exactly the result of one pass over the whole file.

What a line's summary depends on besides the line itself:
- episode and chain numbers: names are numbered in order of first appearance. The range numbers its own names;
  ``RangeMerge.map`` renumbers them into the viewer's (a name already known keeps its number, a new one is appended
  in the range's order, which is the order one pass would have met them in).
- the thrash and deadlock marks of a tick: they come from the open runs of its episode (failures in a row per verb
  and error class, ticks without progress), carried from line to line. Only the episodes with an entry in the
  state at the boundary can differ; their lines in the range are summarized again here, one by one, from the true
  state and from the empty state side by side, until both states agree (from then on the range's own marks are
  right) or the range ends. That is usually a handful of lines: a run ends when its verb succeeds, the window
  without progress when a tick makes progress, everything when the episode ends.
- the state at the end: the range's own, except for the boundary episodes that never agreed, which keep the true
  state worked out here.

``tests/test_traces_summary_split.py`` compares the join with one pass on generated traces, boundaries anywhere.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

from pipeline.traces.summary import _summarize_batch
from pipeline.traces.summary_columns import NO_ID, ListNames, _EpisodeRuns, _Summaries
from pipeline.traces.summary_names import NameStore, tag_of, tags_of
from pipeline.traces.summary_worker import COLUMNS, SummaryDelta


def _state_of(st: _EpisodeRuns | None) -> tuple[dict[str, dict[str, int]], int] | None:
    return None if st is None else (st.runs, st.no_progress)


def _copy_runs(st: _EpisodeRuns) -> _EpisodeRuns:
    copy = _EpisodeRuns()
    copy.runs = {verb: dict(counts) for verb, counts in st.runs.items()}
    copy.no_progress = st.no_progress
    return copy


class _Replay:
    """One line at a time through ``_summarize_batch`` on a scratch summary (its per-line data dropped each time)."""

    def __init__(self, names: list[str]) -> None:
        self.s = _Summaries(transient=True)
        for name in names:
            self.s.episodes.intern(name)

    def step(self, i: int, raw: bytes) -> int:
        s = self.s
        _summarize_batch(s, i, [raw])
        flags: int = s.flags[0]
        for name in COLUMNS:
            del getattr(s, name)[:]
        for lines in s.flag_lines.values():
            del lines[:]
        s.chain_lines.clear()
        del s.chain_episode[:]
        s.chains.clear()
        return flags

    def state(self, name: str) -> tuple[dict[str, dict[str, int]], int] | None:
        return _state_of(self.s.episode_state.get(self.s.episodes.number(name)))


def _renumber(np: Any, column: Any, numbers: array[int]) -> bytes:
    """``column`` (int32, ``NO_ID`` kept) through the map ``numbers`` (range number -> viewer number)."""
    if not len(numbers):
        return bytes(column.tobytes())
    known = column != NO_ID
    mapped = np.frombuffer(numbers, dtype=np.int32)[np.where(known, column, 0)]
    return bytes(np.where(known, mapped, NO_ID).astype(np.int32).tobytes())


def _sorted_tags(np: Any, store: NameStore | ListNames) -> Any:
    """The hash tags of the names in ``store`` (``summary_names.tag_of``), sorted (a numpy array)."""
    if isinstance(store, NameStore):
        return np.sort(np.frombuffer(store.tags(), dtype=np.uint32))
    return np.sort(np.fromiter((tag_of(name) for name in store.names), dtype=np.uint32, count=len(store)))


def _intern_all(np: Any, store: NameStore | ListNames, names: list[str], known_tags: Any) -> list[int]:
    """``store.intern`` of each of ``names`` (distinct), in order; ``known_tags``: the sorted hash tags of every name of
    the store that may be among them. A name with another tag is new, so the runs of such names go in together
    (``extend_new``: a delta's hundreds of chain names interned one by one were most of the join's time)."""
    if not names:
        return []
    tag_list = tags_of(names)
    tags = np.array(tag_list, dtype=np.uint32)
    at = np.minimum(np.searchsorted(known_tags, tags), max(len(known_tags) - 1, 0))
    maybe_known = (known_tags[at] == tags).tolist() if len(known_tags) else [False] * len(names)
    numbers: list[int] = []
    i, n = 0, len(names)
    while i < n:
        if maybe_known[i]:
            numbers.append(store.intern(names[i]))
            i += 1
            continue
        j = i + 1
        while j < n and not maybe_known[j]:
            j += 1
        first = len(store)
        store.extend_new(names[i:j], tag_list[i:j])
        numbers.extend(range(first, first + j - i))
        i = j
    return numbers


class RangeMerge:
    """Joins the deltas of a range summarized from an empty state onto ``s``, which must hold everything before the
    range, its ``episode_state`` being the true state at the range's first line.

    ``read_line(i)``: line ``i`` as the summary pass sees it (bytes up to its newline, ``\\r`` kept).
    Use: ``map`` every delta of the range in order (append each result to ``s`` as a delta without names), then
    ``final_state`` with the range's own open runs at its end.
    """

    def __init__(self, s: _Summaries, read_line: Callable[[int], bytes]) -> None:
        self.s = s
        self.read_line = read_line
        self.episodes = array("i")
        """Range episode number -> the viewer's."""
        self.chains = array("i")
        """Range chain number -> the viewer's."""
        import numpy as np

        names = [s.episodes.names[ep] for ep in s.episode_state]
        # the hash tags of the names known before the range, sorted: a range's name with another tag is new here
        self.known_episode_tags = _sorted_tags(np, s.episodes)
        self.known_chain_tags = _sorted_tags(np, s.chains)
        self.true = _Replay(names)
        self.fresh = _Replay(names)
        for ep, st in s.episode_state.items():
            self.true.s.episode_state[self.true.s.episodes.number(s.episodes.names[ep])] = _copy_runs(st)
        self.pending: set[str] = set(names)
        """Boundary episodes whose true state and the range's have not agreed yet."""
        self.pending_local: dict[int, str] = {}
        """Range episode numbers of the pending episodes met so far."""
        self.replayed = 0
        """Lines summarized again here (for the benchmarks)."""

    def map(self, delta: SummaryDelta) -> SummaryDelta:
        """``delta`` in the viewer's numbers (names interned into ``s`` here: the result carries none), the marks
        of the boundary episodes' lines corrected."""
        import numpy as np

        s = self.s
        first_local = len(self.episodes)
        self.episodes.extend(_intern_all(np, s.episodes, delta.episode_names, self.known_episode_tags))
        if self.pending:
            for local, name in enumerate(delta.episode_names, first_local):
                if name in self.pending:
                    self.pending_local[local] = name
        known = len(s.chains)
        chains = _intern_all(np, s.chains, delta.chain_names, self.known_chain_tags)
        self.chains.extend(chains)
        new = np.asarray(chains, dtype=np.int64) >= known  # (new chains are numbered from ``known`` on, in order)
        if new.any():
            s.chain_lines.new_unseen(int(new.sum()))  # their lines come with the columns
            local_episodes = np.frombuffer(delta.chain_episodes, dtype=np.int32)[new]
            s.chain_episode.frombytes(_renumber(np, local_episodes, self.episodes))
        columns = dict(zip(COLUMNS, delta.columns, strict=True))
        episode = np.frombuffer(columns["episode"], dtype=np.int32)
        columns["episode"] = _renumber(np, episode, self.episodes)
        columns["chain"] = _renumber(np, np.frombuffer(columns["chain"], dtype=np.int32), self.chains)
        if self.pending_local:
            rows = np.flatnonzero(np.isin(episode, np.fromiter(self.pending_local, dtype=np.int32)))
            if len(rows):
                columns["flags"] = self._replay(delta.first, episode, rows.tolist(), columns["flags"])
        return SummaryDelta(
            first=delta.first,
            count=delta.count,
            columns=tuple(columns[name] for name in COLUMNS),
            episode_names=[],
            chain_names=[],
            chain_episodes=b"",
            typecodes=delta.typecodes,
        )

    def _replay(self, first: int, episode: Any, rows: list[int], flags_bytes: bytes) -> bytes:
        """The boundary episodes' lines of a delta summarized from the true state, until it agrees with the range's."""
        flags = array("H")
        flags.frombytes(flags_bytes)
        for row in rows:
            name = self.pending_local.get(int(episode[row]))
            if name is None:
                continue  # agreed earlier in this delta
            raw = self.read_line(first + row)
            flags[row] = self.true.step(first + row, raw)
            self.fresh.step(first + row, raw)
            self.replayed += 1
            if self.true.state(name) == self.fresh.state(name):
                self.pending.discard(name)
                del self.pending_local[int(episode[row])]
        return flags.tobytes()

    def final_state(self, range_state: dict[int, _EpisodeRuns]) -> dict[int, _EpisodeRuns]:
        """The open runs of each episode after the range (viewer's numbers) from the range's own (range numbers):
        those, and the true state of the boundary episodes that never agreed with them."""
        s = self.s
        state: dict[int, _EpisodeRuns] = {}
        for local, st in range_state.items():
            episode = self.episodes[local]
            if s.episodes.names[episode] not in self.pending:
                state[episode] = st
        for name in self.pending:
            true_state = self.true.s.episode_state.get(self.true.s.episodes.number(name))
            if true_state is not None:
                state[s.episodes.number(name)] = true_state
        return state
