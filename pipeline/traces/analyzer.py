"""The streaming analyzer behind ``pipeline.traces.analysis`` (its docstring says what is found and how).

``TraceAnalyzer`` is the record loop: it checks each record, updates the open episode of a tick and the context
sizes (``ContextSizes``, ``pipeline.traces.context_profile``), and hands the rest to ``Episodes``
(``pipeline.traces.episodes``): failures, successes while failures are open, chain marks, the end of a stall or
of an oscillation, episode boundaries. One loop serves both ways in: lines of a file (``feed_lines``, what
``phasef trace stats`` uses) and records one at a time (``feed``), so the per-tick logic exists once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypedDict, Unpack

from pipeline.traces.chains import TraceAnalysis
from pipeline.traces.context_profile import ContextSizes
from pipeline.traces.episodes import Episodes, EpisodeState
from pipeline.traces.growth import context_size
from pipeline.traces.reader import BadLine
from pipeline.traces.records import TraceRecord, as_orjson_reads, decode_fast_errors, fast_decoder, record_from_dict
from pipeline.traces.schema import CHAIN_ROLES, RECORD_KINDS, SCHEMA_VERSION, TICK_OUTCOMES, record_problem
from pipeline.traces.verbs import (
    DEFAULT_DEADLOCK_WINDOW,
    DEFAULT_THRASH_MIN,
    FAILING_TICK_OUTCOMES,
    OSCILLATION_MIN,
)


class AnalyzerOptions(TypedDict, total=False):
    """What makes a finding; an option left out keeps its default. ``deadlock_window``: ticks in a row without
    progress that are a deadlock (``DEFAULT_DEADLOCK_WINDOW``); ``thrash_min``: failures of one verb with one error
    class before it succeeds that are thrashing (``DEFAULT_THRASH_MIN``); ``warmup``: the warm-up of the context
    growth fit for every episode, instead of each episode's own (``pipeline.traces.growth``)."""

    deadlock_window: int
    thrash_min: int
    warmup: int | None


def _as_record(obj: dict[str, Any] | TraceRecord) -> TraceRecord:
    return record_from_dict(obj) if isinstance(obj, dict) else obj


class TraceAnalyzer:
    """Feed records (``feed``, or lines with ``feed_lines``), then ``finish`` to get the ``TraceAnalysis``."""

    def __init__(self, file: str, **options: Unpack[AnalyzerOptions]) -> None:
        self.file = file
        self.records = 0
        self.ticks = 0
        self.bad_lines: list[BadLine] = []
        self.context = ContextSizes(options.get("warmup"))
        self.episodes = Episodes(
            self.context.growth,
            deadlock_window=max(1, options.get("deadlock_window", DEFAULT_DEADLOCK_WINDOW)),
            thrash_min=max(2, options.get("thrash_min", DEFAULT_THRASH_MIN)),
        )
        self.open = self.episodes.open
        self.chains = self.episodes.chains
        # The episode of the last tick, so that a run of ticks of one episode looks it up once.
        self._last_episode: str | None = None
        self._last_run: str | None = None
        self._last_state: EpisodeState | None = None

    def bad(self, bad_line: BadLine) -> None:
        self.bad_lines.append(bad_line)

    def feed(self, line: int, obj: dict[str, Any] | TraceRecord) -> None:
        """Take in the record on ``line`` (a decoded object or a ``TraceRecord``)."""
        self._take(line - 1, (obj,), _as_record, (), None)

    def feed_many(self, line_no: int, objs: list[dict[str, Any] | TraceRecord]) -> None:
        """``feed`` each of ``objs``, on lines ``line_no + 1``, ``line_no + 2``, ... (one loop for the run)."""
        self._take(line_no, objs, _as_record, (), None)

    def feed_lines(self, line_no: int, lines: list[bytes], slow: Callable[[int, bytes], None]) -> None:
        """Decode and take in a batch of complete lines (valid UTF-8) that follow line ``line_no``.

        A line the fast decoder does not take, or a record of no known kind, goes to ``slow(line, raw)`` (the
        caller's exact view of the line names the fault; it may ``feed`` what it finds there).
        """
        self._take(line_no, lines, fast_decoder.decode, decode_fast_errors, slow)

    def _take(
        self,
        line_no: int,
        items: Iterable[Any],
        decode: Callable[[Any], TraceRecord],
        errors: tuple[type[Exception], ...],
        slow: Callable[[int, Any], None] | None,
    ) -> None:
        """The record loop: ``decode`` each item (numbered from ``line_no + 1``) and take it in.

        A valid tick is handled here, with the state it touches in local names (no call per tick: this loop is
        most of the time of ``phasef trace stats``); other records go to ``_boundary``, or to ``slow`` when the
        decoder raised one of ``errors`` or the kind is unknown (without ``slow``, ``_boundary`` names the fault).
        """
        outcomes = TICK_OUTCOMES
        roles = CHAIN_ROLES
        failing = FAILING_TICK_OUTCOMES
        episodes = self.episodes
        open_episodes = episodes.open
        traps = episodes.traps
        context = self.context
        fits = context.growth.open_fits
        new_fit = context.growth.new_fit
        sums = context.sums
        counts = context.counts
        last_episode, last_run, last_state = self._last_episode, self._last_run, self._last_state
        ticks = 0
        for raw in items:
            line_no += 1
            try:
                rec = decode(raw)
            except errors:
                if slow is not None:  # (``errors`` is empty without it)
                    slow(line_no, raw)
                continue
            kind = rec.kind
            if kind == "tick" and type(kind) is str:
                episode = rec.episode
                ts = rec.ts
                t = rec.tick
                outcome = rec.outcome
                role = rec.chain_role
                schema = rec.schema
                # The checks of ``record_problem`` for a tick, inline (it has the last word).
                if (
                    type(episode) is str
                    and episode
                    and (type(ts) is float or type(ts) is int)
                    and type(t) is int
                    and t >= 0
                    and type(outcome) is str
                    and outcome in outcomes
                    and (role is None or (type(role) is str and role in roles))
                    and (schema is None or schema == SCHEMA_VERSION)
                ) or record_problem(rec) is None:
                    ticks += 1
                    run = rec.run_id or ""
                    if last_state is None or episode != last_episode or run != last_run:
                        st = open_episodes.get((run, episode)) or episodes.state((run, episode))
                        last_episode, last_run, last_state = episode, run, st
                    else:
                        st = last_state
                    st.last_ticks.append(t)

                    # Context size (a zero-length prompt is no prompt: a reflex tick, or a size nobody measured)
                    # and the episode's growth fit (``GrowthFit.add``).
                    chars = rec.context_chars
                    if type(chars) is not int:
                        chars = context_size(rec)
                    if chars:
                        fit = fits.get(st.key)
                        if fit is None:
                            fit = new_fit(st.key)
                        if t >= fit.warmup:
                            n = fit.n = fit.n + 1
                            mx = fit.mx
                            dx = t - mx
                            mx = fit.mx = mx + dx / n
                            my = fit.my
                            my = fit.my = my + (chars - my) / n
                            fit.cxy += dx * (chars - my)
                            fit.m2x += dx * (t - mx)
                        if t < len(sums):
                            sums[t] += chars
                            counts[t] += 1
                        else:
                            context.add_far(t, chars)
                        if chars > context.max:
                            context.max = chars

                    trap = rec.trap
                    if trap:
                        trap_name = str(trap)
                        traps[trap_name] = traps.get(trap_name, 0) + 1

                    action = rec.action
                    if type(action) is not dict:
                        action = None
                    failed = outcome in failing

                    progress = rec.progress
                    if type(progress) is not bool:
                        progress = not failed and st.novel_observation(rec)
                    if progress:
                        if st.noprogress_len:
                            episodes.end_noprogress(st)
                    else:
                        if st.noprogress_len == 0:
                            st.noprogress_start = t
                        st.noprogress_len += 1

                    # Oscillation: the exact action equals the one two ticks back and differs from the previous one.
                    previous = st.prev_action
                    osc_len = st.osc_len
                    if action is not None and osc_len >= 2 and action == st.prev2_action and action != previous:
                        st.osc_len = osc_len + 1
                    else:
                        if osc_len >= OSCILLATION_MIN:
                            episodes.end_oscillation(st)
                        if action is not None and previous is not None and action != previous:
                            st.osc_start = st.prev_tick
                            st.osc_len = 2
                            st.osc_pair = (previous, action)
                        elif osc_len:
                            st.osc_len = 0
                    st.prev2_action = previous
                    st.prev_action = action

                    chain_id = rec.chain_id
                    if chain_id is not None:
                        episodes.marked_chain(
                            st, chain_id if type(chain_id) is str else str(as_orjson_reads(chain_id)), t, rec
                        )
                    if failed:
                        episodes.failed_tick(st, t, rec, action, outcome)
                    elif action is not None and st.open_tools:
                        episodes.succeeded_tick(st, t, rec, action)
                    st.prev_tick = t
                    continue
            # Not a valid tick: hand the counts and the last-episode cache back first (``slow`` may feed again).
            self.records += ticks
            self.ticks += ticks
            ticks = 0
            if slow is None or (type(kind) is str and kind in RECORD_KINDS):
                self._boundary(line_no, rec)
                last_state = None
            else:
                self._last_episode, self._last_run, self._last_state = last_episode, last_run, last_state
                slow(line_no, raw)
                last_episode, last_run, last_state = self._last_episode, self._last_run, self._last_state
        self.records += ticks
        self.ticks += ticks
        self._last_episode, self._last_run, self._last_state = last_episode, last_run, last_state

    def _boundary(self, line: int, rec: TraceRecord) -> None:
        """A record that is not a valid tick: an episode's start or end, or a bad record."""
        problem = record_problem(rec)
        if problem is not None:
            self.bad_lines.append(BadLine(file=self.file, line=line, reason=problem))
            return
        self.records += 1
        key = (rec.run_id or "", rec.episode)
        if rec.kind == "episode_start":
            self.episodes.start(key, rec.context_window)
        else:
            self.episodes.end(key, rec)

    def finish(self, sha256: str = "", *, with_chains: bool = True) -> TraceAnalysis:
        """The analysis. ``with_chains=False`` leaves ``chains`` empty: read them from ``self.chains`` (a compact
        ``ChainStore``) when a trace has too many to hold as objects."""
        found = self.episodes
        found.close_all()
        self._last_state = None
        store = found.chains
        return TraceAnalysis(
            file=self.file,
            sha256=sha256,
            records=self.records,
            bad_lines=self.bad_lines,
            episodes=len(found.keys),
            ticks=self.ticks,
            chains=list(store) if with_chains else [],
            thrash=sorted(found.thrash, key=lambda e: (e.episode, e.start_tick)),
            oscillations=found.oscillations,
            deadlocks=sorted(found.deadlocks, key=lambda d: (d.episode, d.start_tick)),
            deaths=found.deaths,
            traps=dict(sorted(found.traps.items())),
            error_classes=dict(sorted(found.error_classes.items(), key=lambda kv: (-kv[1], kv[0]))),
            mttr_ticks=round(store.recover_ticks / store.recover_ticks_n, 3) if store.recover_ticks_n else None,
            mttr_seconds=(
                round(store.recover_seconds / store.recover_seconds_n, 3) if store.recover_seconds_n else None
            ),
            context=self.context.profile(),
        )
