"""The streaming analyzer behind ``pipeline.traces.analysis`` (its docstring says what is found and how).
Bigger than 400 lines: ``TraceAnalyzer`` is one state machine over the records; its per-tick steps share its state.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, Literal

from pipeline.traces.chains import (
    ChainStore,
    ContextProfile,
    Deadlock,
    DeathTrace,
    Oscillation,
    ThrashEvent,
    TraceAnalysis,
    _Chain,
    _EpisodeState,
    _Run,
)
from pipeline.traces.growth import GrowthFit, context_size
from pipeline.traces.reader import (
    BadLine,
)
from pipeline.traces.records import (
    TraceRecord,
    decode_fast_errors,
    fast_decoder,
    record_from_dict,
)
from pipeline.traces.schema import (
    CHAIN_ROLES,
    RECORD_KINDS,
    SCHEMA_VERSION,
    TICK_OUTCOMES,
    record_problem,
)
from pipeline.traces.verbs import (
    BOUND_LATE_EARLY_RATIO,
    BOUND_LATE_GROWTH_SHARE,
    BOUND_MIN_SPAN,
    CONTEXT_LIST_TICKS,
    DEATH_OUTCOMES,
    DEFAULT_DEADLOCK_WINDOW,
    DEFAULT_THRASH_MIN,
    FAILING_TICK_OUTCOMES,
    INVALID_VERB,
    OSCILLATION_MIN,
    PRECONDITION_CLASSES,
    _error_message,
    _label,
    _tool_name,
    action_verb,
)

VERB_CACHE = 4096
_NO_VERB = object()


class TraceAnalyzer:
    """Feed records one at a time (``feed``), then ``finish`` to get the ``TraceAnalysis``."""

    def __init__(
        self,
        file: str,
        *,
        deadlock_window: int = DEFAULT_DEADLOCK_WINDOW,
        thrash_min: int = DEFAULT_THRASH_MIN,
        warmup: int | None = None,
    ) -> None:
        self.file = file
        self.growth = GrowthFit(warmup)
        self.deadlock_window = max(1, deadlock_window)
        self.thrash_min = max(2, thrash_min)
        self.records = 0
        self.ticks = 0
        self.bad_lines: list[BadLine] = []
        self.episode_keys: set[tuple[str, str]] = set()
        self.open: dict[tuple[str, str], _EpisodeState] = {}
        self.chains = ChainStore()
        self.thrash: list[ThrashEvent] = []
        self.oscillations: list[Oscillation] = []
        self.deadlocks: list[Deadlock] = []
        self.deaths: list[DeathTrace] = []
        self.traps: dict[str, int] = {}
        self.error_classes: dict[str, int] = {}
        self.ctx_sums: list[int] = []
        self.ctx_counts: list[int] = []
        self.ctx_far_sums: dict[int, int] = {}
        self.ctx_far_counts: dict[int, int] = {}
        self.ctx_max = 0
        self._last_episode: str | None = None
        self._last_run: str | None = None
        self._last_state: _EpisodeState | None = None
        self._verbs: dict[tuple[tuple[str, Any], ...], str | object | None] = {}

    # ---- input -------------------------------------------------------------------------------------------------

    def bad(self, bad_line: BadLine) -> None:
        self.bad_lines.append(bad_line)

    def feed(self, line: int, obj: dict[str, Any] | TraceRecord) -> None:
        """Take in the record on ``line`` (a decoded object or a ``TraceRecord``)."""
        rec = record_from_dict(obj) if isinstance(obj, dict) else obj
        kind = rec.kind
        if kind == "tick":
            # Fast path for the bulk of a trace: the checks of ``record_problem`` for a tick, inline.
            episode = rec.episode
            ts = rec.ts
            t = rec.tick
            outcome = rec.outcome
            role = rec.chain_role
            schema = rec.schema
            if (
                type(episode) is str
                and episode
                and (type(ts) is float or type(ts) is int)
                and type(t) is int
                and t >= 0
                and type(outcome) is str
                and outcome in TICK_OUTCOMES
                and (role is None or (type(role) is str and role in CHAIN_ROLES))
                and (schema is None or schema == SCHEMA_VERSION)
            ):
                self.records += 1
                run = rec.run_id or ""
                if episode == self._last_episode and run == self._last_run and self._last_state is not None:
                    state = self._last_state
                else:
                    key = (run, episode)
                    state = self.open.get(key) or self._open_episode(key)
                    self._last_episode, self._last_run, self._last_state = episode, run, state
                self._tick(state, rec, t, outcome)
                return
        problem = record_problem(rec)
        if problem is not None:
            self.bad_lines.append(BadLine(file=self.file, line=line, reason=problem))
            return
        self.records += 1
        self._last_state = None
        key = (rec.run_id or "", rec.episode)
        if kind == "tick":
            self._tick(self.open.get(key) or self._open_episode(key), rec, rec.tick, rec.outcome)
        elif kind == "episode_start":
            previous = self.open.pop(key, None)
            if previous is not None:
                self._close_episode(previous, None)
            self._open_episode(key)
            self.growth.start(key, rec.context_window)
        else:
            ending = self.open.pop(key, None)
            if ending is None:
                self.episode_keys.add(key)
                ending = _EpisodeState(key[1])
            self._close_episode(ending, rec)

    def feed_lines(self, line_no: int, lines: list[bytes], slow: Callable[[int, bytes], None]) -> None:
        """Decode and take in a batch of complete lines (valid UTF-8) that follow line ``line_no``.

        The same as ``feed`` on each decoded record, with the common tick (valid, of the episode before it, no
        chain mark, no trap, no failure) handled inline: one loop, no call per record, state in local names. A
        line the fast decoder does not take, or a record of no known kind, goes to ``slow(line, raw)``.
        """
        decode = fast_decoder.decode
        errors = decode_fast_errors
        kinds = RECORD_KINDS
        outcomes = TICK_OUTCOMES
        roles = CHAIN_ROLES
        failing = FAILING_TICK_OUTCOMES
        invalid_verb = INVALID_VERB
        feed = self.feed
        fits = self.growth.open_fits
        new_fit = self.growth.new_fit
        sums = self.ctx_sums
        counts = self.ctx_counts
        last_episode = self._last_episode
        last_run = self._last_run
        last_state = self._last_state
        records = ticks = 0
        for raw in lines:
            line_no += 1
            try:
                rec = decode(raw)
            except errors:
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
                ):
                    run = rec.run_id or ""
                    if last_state is None or episode != last_episode or run != last_run:
                        # Hand the counters back before anything that reads them or the last-episode cache.
                        self.records += records
                        self.ticks += ticks
                        records = ticks = 0
                        key = (run, episode)
                        st = self.open.get(key) or self._open_episode(key)
                        last_episode, last_run, last_state = episode, run, st
                    else:
                        st = last_state
                    records += 1
                    ticks += 1
                    # ---- ``_tick``, inline; the rare branches call the same helpers it does ----
                    st.last_ticks.append(t)
                    chars = rec.context_chars
                    if type(chars) is not int:
                        chars = context_size(rec)
                    if chars:
                        fit = fits.get(st.key)
                        if fit is None:
                            fit = new_fit(st.key)
                        if t >= fit.warmup:
                            n = fit.n = fit.n + 1
                            dx = t - fit.mx
                            fit.mx += dx / n
                            my = fit.my = fit.my + (chars - fit.my) / n
                            fit.cxy += dx * (chars - my)
                            fit.m2x += dx * (t - fit.mx)
                        if t < len(sums):
                            sums[t] += chars
                            counts[t] += 1
                        else:
                            self._context_far(t, chars)
                        if chars > self.ctx_max:
                            self.ctx_max = chars
                    trap = rec.trap
                    if trap:
                        trap_name = str(trap)
                        self.traps[trap_name] = self.traps.get(trap_name, 0) + 1
                    action = rec.action
                    if type(action) is not dict:
                        action = None
                    failed = outcome in failing
                    progress = rec.progress
                    if type(progress) is not bool:
                        progress = not failed and self._novel_observation(st, rec)
                    if progress:
                        if st.noprogress_len:
                            self._end_noprogress(st)
                    else:
                        if st.noprogress_len == 0:
                            st.noprogress_start = t
                        st.noprogress_len += 1
                    previous = st.prev_action
                    osc_len = st.osc_len
                    if action is not None and osc_len >= 2 and action == st.prev2_action and action != previous:
                        st.osc_len = osc_len + 1
                    else:
                        if osc_len >= OSCILLATION_MIN:
                            self._end_oscillation(st)
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
                        self._marked_chain(st, str(chain_id), t, rec)
                    if failed:
                        self._failed_tick(st, t, rec, action, outcome)
                    elif action is not None and st.open_tools:
                        # ``_tool_name`` for the usual shapes of actions, inline
                        tool = action.get("tool")
                        if type(tool) is not str or not tool:
                            tool = action.get("act")
                            if type(tool) is not str or not tool:
                                tool = _tool_name(action) or "?"
                        open_tools = st.open_tools
                        if tool in open_tools or invalid_verb in open_tools:
                            self._success(st, t, rec, self._verb(action))
                    st.prev_tick = t
                    continue
            if type(kind) is str and kind in kinds:
                self.records += records
                self.ticks += ticks
                records = ticks = 0
                self._last_episode, self._last_run, self._last_state = last_episode, last_run, last_state
                feed(line_no, rec)
            else:  # a bad record: the caller's exact view of the line names the fault
                self.records += records
                self.ticks += ticks
                records = ticks = 0
                self._last_episode, self._last_run, self._last_state = last_episode, last_run, last_state
                slow(line_no, raw)
            last_episode, last_run, last_state = self._last_episode, self._last_run, self._last_state
        self.records += records
        self.ticks += ticks
        self._last_episode, self._last_run, self._last_state = last_episode, last_run, last_state

    def _open_episode(self, key: tuple[str, str]) -> _EpisodeState:
        self.episode_keys.add(key)
        state = _EpisodeState(key[1], key)
        self.open[key] = state
        return state

    # ---- per tick ----------------------------------------------------------------------------------------------

    def _tick(self, st: _EpisodeState, obj: TraceRecord, t: int, outcome: str) -> None:
        self.ticks += 1
        st.last_ticks.append(t)

        # A zero-length prompt is no prompt (a reflex tick that called no model, or a size nobody measured).
        chars = obj.context_chars
        if type(chars) is not int:
            chars = context_size(obj)
        if chars:
            self.growth.add(st.key, t, chars)
            sums = self.ctx_sums
            if t < len(sums):
                sums[t] += chars
                self.ctx_counts[t] += 1
            else:
                self._context_far(t, chars)
            if chars > self.ctx_max:
                self.ctx_max = chars

        trap = obj.trap
        if trap:
            trap_name = str(trap)
            self.traps[trap_name] = self.traps.get(trap_name, 0) + 1

        action = obj.action
        if type(action) is not dict:
            action = None
        failed = outcome in FAILING_TICK_OUTCOMES

        progress = obj.progress
        if type(progress) is not bool:
            progress = not failed and self._novel_observation(st, obj)
        if progress:
            if st.noprogress_len:
                self._end_noprogress(st)
        else:
            if st.noprogress_len == 0:
                st.noprogress_start = t
            st.noprogress_len += 1

        # Oscillation: the exact action equals the one two ticks back and differs from the previous one.
        previous = st.prev_action
        if action is not None and st.osc_len >= 2 and action == st.prev2_action and action != previous:
            st.osc_len += 1
        else:
            if st.osc_len >= OSCILLATION_MIN:
                self._end_oscillation(st)
            if action is not None and previous is not None and action != previous:
                st.osc_start = st.prev_tick
                st.osc_len = 2
                st.osc_pair = (previous, action)
            else:
                st.osc_len = 0
        st.prev2_action = previous
        st.prev_action = action

        chain_id = obj.chain_id
        if chain_id is not None:
            self._marked_chain(st, str(chain_id), t, obj)

        if failed:
            self._failed_tick(st, t, obj, action, outcome)
        elif st.open_tools and action is not None:
            self._succeeded_tick(st, t, obj, action)
        st.prev_tick = t

    def _failed_tick(
        self, st: _EpisodeState, t: int, obj: TraceRecord, action: dict[str, Any] | None, outcome: str
    ) -> None:
        error_class = obj.error_class
        if not isinstance(error_class, str) or not error_class:
            error_class = "Timeout" if outcome == "timeout" else ("Fatal" if outcome == "death" else "Error")
        self.error_classes[error_class] = self.error_classes.get(error_class, 0) + 1
        st.last_error_class = error_class
        self._failure(st, t, obj, self._verb(action) or INVALID_VERB, error_class)
        if outcome == "death" or obj.chain_role == "death":
            st.died_at = t

    def _succeeded_tick(self, st: _EpisodeState, t: int, obj: TraceRecord, action: dict[str, Any]) -> None:
        """A successful tick while some tool has failures open: does it end them?"""
        tool = _tool_name(action) or "?"
        if tool in st.open_tools or INVALID_VERB in st.open_tools:
            self._success(st, t, obj, self._verb(action))

    def _verb(self, action: dict[str, Any] | None) -> str | None:
        """``action_verb(action)``, remembered for actions of hashable values (most are a tool name and a string).

        Exact: the verb reads only string values (and dicts, whose actions are not remembered), so actions whose
        items compare equal (``1 == 1.0 == True`` included) have the same verb. At most ``VERB_CACHE`` entries.
        """
        if action is None:
            return None
        try:
            key = tuple(action.items())
            verb = self._verbs.get(key, _NO_VERB)
        except TypeError:  # a list or dict among the values
            return action_verb(action)
        if verb is _NO_VERB:
            verb = action_verb(action)
            if len(self._verbs) >= VERB_CACHE:
                self._verbs.clear()
            self._verbs[key] = verb
        return verb  # type: ignore[return-value]

    def _context_far(self, t: int, chars: int) -> None:
        """Context sample for a tick number beyond the per-tick lists: grow them, or use a dict for huge numbers."""
        if t < CONTEXT_LIST_TICKS:
            grow = t + 1 - len(self.ctx_sums)
            self.ctx_sums.extend([0] * grow)
            self.ctx_counts.extend([0] * grow)
            self.ctx_sums[t] += chars
            self.ctx_counts[t] += 1
        else:
            self.ctx_far_sums[t] = self.ctx_far_sums.get(t, 0) + chars
            self.ctx_far_counts[t] = self.ctx_far_counts.get(t, 0) + 1

    def _novel_observation(self, st: _EpisodeState, obj: TraceRecord) -> bool:
        """Progress for records that do not say: a successful tick that showed something not seen before."""
        if st.seen_observations is None:
            st.seen_observations = set()
        observation = obj.observation
        digest = hash(observation) if isinstance(observation, str) else 0
        if digest in st.seen_observations:
            return False
        st.seen_observations.add(digest)
        return True

    def _end_noprogress(self, st: _EpisodeState) -> None:
        if st.noprogress_len >= self.deadlock_window:
            self.deadlocks.append(
                Deadlock(
                    episode=st.name,
                    start_tick=st.noprogress_start,
                    end_tick=st.prev_tick if st.prev_tick >= st.noprogress_start else st.noprogress_start,
                    reason=f"no progress for {st.noprogress_len} ticks",
                )
            )
        st.noprogress_len = 0

    def _end_oscillation(self, st: _EpisodeState) -> None:
        if st.osc_len >= OSCILLATION_MIN and st.prev_tick >= st.osc_start:
            self.oscillations.append(
                Oscillation(
                    episode=st.name,
                    start_tick=st.osc_start,
                    end_tick=st.prev_tick,
                    actions=[_label(action) for action in st.osc_pair if action is not None],
                )
            )
        st.osc_len = 0

    def _marked_chain(self, st: _EpisodeState, chain_id: str, t: int, obj: TraceRecord) -> None:
        if not st.has_marks:
            # The trace marks its own chains: derived ones are no longer needed for this episode.
            st.has_marks = True
            st.derived.clear()
            st.done_derived.clear()
        role = obj.chain_role
        chain = st.marked.get(chain_id)
        if chain is None:
            error_class = obj.error_class
            chain = _Chain(chain_id, st.name, t, obj, error_class if isinstance(error_class, str) else None)
            recovery = obj.recovery
            if isinstance(recovery, str) and recovery:
                chain.mechanism = sys.intern(recovery)
            st.marked[chain_id] = chain
        elif not chain.closed:
            chain.add(t, obj)
        else:
            return
        if role == "recovered":
            chain.close("recovered")
        elif role == "death":
            chain.close("death")
        if chain.closed:
            st.done_marked.append(st.marked.pop(chain_id))

    def _failure(self, st: _EpisodeState, t: int, obj: TraceRecord, verb: str, error_class: str) -> None:
        st.open_tools.add(verb.split(":", 1)[0])
        if not st.has_marks:
            chain = st.derived.get(verb)
            if chain is None:
                st.derived_seq += 1
                st.derived[verb] = _Chain(f"{st.name}:auto-{st.derived_seq}", st.name, t, obj, error_class)
            else:
                chain.add(t, obj)

        runs = st.thrash.get(verb)
        if runs is None:
            runs = st.thrash[verb] = {}
        run = runs.get(error_class)
        if run is None:
            runs[error_class] = _Run(t)
        else:
            run.end = t
            run.count += 1

        if error_class in PRECONDITION_CLASSES:
            message = _error_message(obj)
            repeats = st.repeats.get(verb)
            if repeats is None:
                repeats = st.repeats[verb] = {}
            rkey = (error_class, message)
            rep = repeats.get(rkey)
            if rep is None:
                repeats[rkey] = _Run(t)
            else:
                rep.end = t
                rep.count += 1

    def _success(self, st: _EpisodeState, t: int, obj: TraceRecord, verb: str | None) -> None:
        if verb is None:
            return
        for key in (verb, INVALID_VERB):
            chain = st.derived.pop(key, None)
            if chain is not None:
                chain.add(t, obj)
                chain.close("recovered")
                st.done_derived.append(chain)
        self._end_runs(st, verb)
        st.open_tools = {v.split(":", 1)[0] for v in (*st.derived, *st.thrash, *st.repeats)}

    def _end_runs(self, st: _EpisodeState, verb: str) -> None:
        for key in (verb, INVALID_VERB):
            runs = st.thrash.pop(key, None)
            if runs:
                for error_class, run in runs.items():
                    if run.count >= self.thrash_min:
                        self.thrash.append(
                            ThrashEvent(
                                episode=st.name,
                                start_tick=run.start,
                                end_tick=run.end,
                                action=key,
                                error_class=error_class,
                                count=run.count,
                            )
                        )
            repeats = st.repeats.pop(key, None)
            if repeats:
                for (error_class, message), rep in repeats.items():
                    if rep.count >= self.thrash_min:
                        self.deadlocks.append(
                            Deadlock(
                                episode=st.name,
                                start_tick=rep.start,
                                end_tick=rep.end,
                                reason=f"same {error_class} repeated {rep.count} times on {key}: {message}",
                            )
                        )

    # ---- episode end -------------------------------------------------------------------------------------------

    def _close_episode(self, st: _EpisodeState, end: TraceRecord | None) -> None:
        self._last_state = None
        self.growth.close(st.key)
        episode_outcome = end.outcome if end is not None else None
        died = st.died_at is not None or episode_outcome in DEATH_OUTCOMES
        open_outcome: Literal["death", "open"] = "death" if died else "open"
        for chain in st.derived.values():
            chain.close(open_outcome)
            st.done_derived.append(chain)
        for chain in st.marked.values():
            chain.close(open_outcome)
            st.done_marked.append(chain)
        chosen = st.done_marked if st.done_marked else st.done_derived
        chosen.sort(key=lambda c: c.ticks[0])
        add_chain = self.chains.add
        for chain in chosen:
            add_chain(chain)
        for verb in list(st.thrash) + list(st.repeats):
            self._end_runs(st, verb)
        if st.noprogress_len:
            self._end_noprogress(st)
        self._end_oscillation(st)
        if died:
            reason = end.reason if end is not None else None
            error_class = end.error_class if end is not None else None
            if not isinstance(error_class, str):
                error_class = st.last_error_class
            if not isinstance(reason, str):
                reason = f"episode outcome {episode_outcome}" if episode_outcome else "a tick ended in death"
            self.deaths.append(
                DeathTrace(
                    episode=st.name,
                    tick=st.died_at if st.died_at is not None else (st.last_ticks[-1] if st.last_ticks else None),
                    reason=reason,
                    error_class=error_class,
                    last_ticks=list(st.last_ticks),
                )
            )

    # ---- result ------------------------------------------------------------------------------------------------

    def finish(self, sha256: str = "", *, with_chains: bool = True) -> TraceAnalysis:
        """The analysis. ``with_chains=False`` leaves ``chains`` empty: read them from ``self.chains`` (a compact
        ``ChainStore``) when a trace has too many to hold as objects."""
        for state in list(self.open.values()):
            self._close_episode(state, None)
        self.open.clear()
        store = self.chains
        return TraceAnalysis(
            file=self.file,
            sha256=sha256,
            records=self.records,
            bad_lines=self.bad_lines,
            episodes=len(self.episode_keys),
            ticks=self.ticks,
            chains=list(store) if with_chains else [],
            thrash=sorted(self.thrash, key=lambda e: (e.episode, e.start_tick)),
            oscillations=self.oscillations,
            deadlocks=sorted(self.deadlocks, key=lambda d: (d.episode, d.start_tick)),
            deaths=self.deaths,
            traps=dict(sorted(self.traps.items())),
            error_classes=dict(sorted(self.error_classes.items(), key=lambda kv: (-kv[1], kv[0]))),
            mttr_ticks=round(store.recover_ticks / store.recover_ticks_n, 3) if store.recover_ticks_n else None,
            mttr_seconds=(
                round(store.recover_seconds / store.recover_seconds_n, 3) if store.recover_seconds_n else None
            ),
            context=self._context_profile(),
        )

    def _context_profile(self) -> ContextProfile:
        counts = {t: c for t, c in enumerate(self.ctx_counts) if c}
        counts.update(self.ctx_far_counts)
        sums = {t: s for t, s in enumerate(self.ctx_sums) if self.ctx_counts[t]}
        sums.update(self.ctx_far_sums)
        samples = sum(counts.values())
        if samples == 0:
            return ContextProfile(
                max_chars=0,
                mean_chars=0.0,
                growth_per_tick=0.0,
                early_mean=0.0,
                late_mean=0.0,
                bounded=False,
                samples=0,
            )
        span = max(counts)
        quarter = span / 4
        early = _window_mean(sums, counts, lambda t: t <= quarter)
        late = _window_mean(sums, counts, lambda t: t >= span - quarter)
        half = span / 2
        _, late_half_mean = _fit(sums, counts, lambda t: t >= half)
        slope = self.growth.growth() or 0.0
        late_growth = slope * (span - half)
        bounded = (
            span >= BOUND_MIN_SPAN
            and late_growth <= BOUND_LATE_GROWTH_SHARE * max(late_half_mean, 1.0)
            and late <= BOUND_LATE_EARLY_RATIO * max(early, 1.0)
        )
        return ContextProfile(
            max_chars=self.ctx_max,
            mean_chars=round(sum(sums.values()) / samples, 3),
            growth_per_tick=slope,
            early_mean=round(early, 3),
            late_mean=round(late, 3),
            bounded=bounded,
            samples=samples,
        )


def _window_mean(sums: dict[int, int], counts: dict[int, int], keep: Any) -> float:
    total = 0
    n = 0
    for t, c in counts.items():
        if keep(t):
            total += sums[t]
            n += c
    return total / n if n else 0.0


def _fit(sums: dict[int, int], counts: dict[int, int], keep: Any) -> tuple[float, float]:
    """Least-squares slope of size against tick number over the kept ticks, and their mean size."""
    n = sx = sy = sxx = sxy = 0.0
    for t, c in counts.items():
        if keep(t):
            s = sums[t]
            n += c
            sx += t * c
            sy += s
            sxx += t * t * c
            sxy += t * s
    if n == 0:
        return 0.0, 0.0
    denominator = n * sxx - sx * sx
    slope = (n * sxy - sx * sy) / denominator if denominator > 0 and math.isfinite(denominator) else 0.0
    return slope, sy / n
