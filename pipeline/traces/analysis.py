"""What went wrong in a dirty trace, and how the agent got out of it: one streaming pass over the records.

Findings, per episode:

* **Recovery chains** — a failure, the attempts after it, and how it ended: ``recovered``, ``death`` (the episode
  died with the chain open) or ``open``. Canonical traces mark chains on the ticks (``chain_id``/``chain_role``)
  and those marks are used as written. Foreign traces carry no marks, so chains are derived: a failing tick opens a
  chain keyed by its action *verb* (see ``action_verb``); later failures of the same verb are attempts; the chain
  is recovered by the first later tick where the same verb succeeds. A different action succeeding is not
  evidence that the failure was overcome (in tau-bench the agent answers the user between five identical failing
  calls), the same action succeeding is. A failure without any parsable action (a schema violation) is recovered
  by the first successful tick of any action.
* **Thrashing** — the same verb failing with the same error class ``thrash_min`` times or more before that verb
  succeeds again (other actions may come in between). Verbs ignore arguments on purpose: retries with nudged
  arguments (SWE-agent edits with a shifted line range) are what thrashing looks like in the wild.
* **Oscillation** — A/B/A/B: two different exact actions (verb and arguments) alternating for four ticks or more.
  Exact actions here, not verbs: reading a file and then editing it, over and over, is normal work.
* **Deadlock** — ``deadlock_window`` ticks in a row without progress, or the same precondition error (same verb,
  error class and message, for classes that describe the world rather than the agent's output) ``thrash_min``
  times without that verb succeeding in between.
* **Deaths** — episodes that ended in ``death`` (or had a tick whose outcome or chain role is ``death``), with
  the ticks that led there; **traps** touched; **error classes**; **MTTR** in ticks and seconds.
* **Context profile** — context size per tick number and an O(1)-bound check (``ContextProfile``).

Ideas taken from OpenHands' stuck detector (repeated action/error, alternating pairs, comparisons that ignore
volatile ids) and SWE-agent's exit statuses (an episode's end has a reason taxonomy; budget and context
exhaustion end an episode differently from a wrong answer), reworked for a streaming pass over canonical records.

Memory is bounded by the per-episode state of episodes still open and by the findings themselves, never by the
size of the file: records are decoded one line at a time and dropped.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import orjson
from pydantic import BaseModel

from pipeline.traces.growth import GrowthFit, context_size
from pipeline.traces.reader import (
    DEFAULT_MAX_LINE_BYTES,
    BadLine,
    _decode_problem,
    _iter_line_batches,
    _Tail,
    file_sha256,
)
from pipeline.traces.records import (
    TraceRecord,
    decode_fallback,
    decode_fast_errors,
    fast_decoder,
    record_from_dict,
    valid_utf8,
)
from pipeline.traces.schema import (
    CHAIN_ROLES,
    RECORD_KINDS,
    SCHEMA_VERSION,
    TICK_OUTCOMES,
    record_problem,
)

DEFAULT_DEADLOCK_WINDOW = 8
DEFAULT_THRASH_MIN = 3
OSCILLATION_MIN = 4
LAST_TICKS = 8
ERROR_MESSAGE_CHARS = 160
LABEL_CHARS = 80
CONTEXT_LIST_TICKS = 1 << 20  # per-tick-number context sums live in lists up to here, in dicts beyond
INVALID_VERB = "<invalid>"

# Episode outcomes that are deaths. A ``timeout`` (ticks, budget or time spent without an answer) is not one: the
# agent was still alive when it was stopped, as the workload's own reports count it too.
DEATH_OUTCOMES = frozenset({"death"})
FAILING_TICK_OUTCOMES = frozenset({"error", "timeout", "death"})
# Error classes that say the world refused (a lock, a missing thing, a tool that keeps saying no), as opposed to
# the agent's own output being wrong; the same one repeated means the agent is stuck behind it.
PRECONDITION_CLASSES = frozenset(
    {"Deadlock", "NotFound", "ToolError", "Timeout", "ConnectionError", "PermissionDenied"}
)
SHELL_TOOLS = frozenset(
    {"bash", "sh", "shell", "execute_bash", "run", "cmd", "terminal", "execute_command", "run_command"}
)
CODE_TOOLS = frozenset({"ipython", "python", "run_ipython", "execute_ipython_cell", "jupyter"})
_NAME_KEYS = ("tool", "act", "name", "function", "action", "type")  # "act": the reference workload's actions
_ARGS_KEYS = ("args", "arguments", "params", "input", "kwargs")

# O(1) context bound: after warm-up (the second half of the tick range) the fitted growth across that half must
# stay under this share of its mean size, and the late quarter must not exceed the early quarter by this ratio.
BOUND_LATE_GROWTH_SHARE = 0.10
BOUND_LATE_EARLY_RATIO = 2.0
BOUND_MIN_SPAN = 8

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SHELL_SPLIT = re.compile(r"&&|\|\||;|\|")
_CALL = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\s*=\s*)?([A-Za-z_][\w.]*)\s*\(")
_SPACES = re.compile(r"\s+")
_COMMAND_PREFIXES = frozenset({"sudo", "env", "time", "nohup", "exec", "command"})


class ChainSummary(BaseModel):
    """One recovery chain. ``attempts`` counts the ticks after the failure that retried it (the last of which
    recovered or died); ``ticks`` lists the failure, the attempts and the closing tick."""

    chain_id: str
    episode: str
    start_tick: int
    end_tick: int
    failure_class: str | None
    attempts: int
    outcome: Literal["recovered", "death", "open"]
    ticks_to_recover: int | None
    seconds_to_recover: float | None
    mechanism: str | None
    ticks: list[int]


_CHAIN_FIELDS = set(ChainSummary.model_fields)


class ThrashEvent(BaseModel):
    """``action`` (a verb) failed ``count`` times with ``error_class`` before it succeeded again."""

    episode: str
    start_tick: int
    end_tick: int
    action: str
    error_class: str | None
    count: int


class Oscillation(BaseModel):
    """Two exact actions (readable labels in ``actions``) alternated from ``start_tick`` to ``end_tick``."""

    episode: str
    start_tick: int
    end_tick: int
    actions: list[str]


class Deadlock(BaseModel):
    """No progress over a window of ticks, or the same precondition error repeated (``reason`` says which)."""

    episode: str
    start_tick: int
    end_tick: int
    reason: str


class DeathTrace(BaseModel):
    """An episode that died: the tick it died on, why, and the numbers of its last ticks (to pull the raw
    records of the death from the trace)."""

    episode: str
    tick: int | None
    reason: str | None
    error_class: str | None
    last_ticks: list[int]


class ContextProfile(BaseModel):
    """Context size per tick. ``growth_per_tick`` is the within-episode slope after each episode's warm-up, the
    definition the eval report uses too (``pipeline.traces.growth``; 0.0 when undefined); ``early_mean``/``late_mean``
    are the mean sizes in the first and last quarter of the tick range. ``bounded`` is the O(1) verdict and fails
    closed: no samples, or fewer than ``BOUND_MIN_SPAN`` ticks of range, is not evidence of a bound."""

    max_chars: int
    mean_chars: float
    growth_per_tick: float
    early_mean: float
    late_mean: float
    bounded: bool
    samples: int


class TraceAnalysis(BaseModel):
    """Everything found in one trace file; ``sha256`` binds the findings to the exact bytes analyzed."""

    file: str
    sha256: str
    records: int
    bad_lines: list[BadLine]
    episodes: int
    ticks: int
    chains: list[ChainSummary]
    thrash: list[ThrashEvent]
    oscillations: list[Oscillation]
    deadlocks: list[Deadlock]
    deaths: list[DeathTrace]
    traps: dict[str, int]
    error_classes: dict[str, int]
    mttr_ticks: float | None
    mttr_seconds: float | None
    context: ContextProfile


def _action_args(action: dict[str, Any]) -> dict[str, Any]:
    for key in _ARGS_KEYS:
        value = action.get(key)
        if isinstance(value, dict):
            return value
    return action


def _command_word(command: str) -> str:
    """The program a shell command line runs: ``cd x && FOO=1 sudo python3 a.py`` -> ``python3``."""
    first_line = command.strip().split("\n", 1)[0]
    saw_cd = False
    for segment in _SHELL_SPLIT.split(first_line):
        words = segment.split()
        while words and (_ASSIGNMENT.match(words[0]) or words[0] in _COMMAND_PREFIXES):
            words.pop(0)
        if not words:
            continue
        if words[0] == "cd":
            saw_cd = True
            continue
        return words[0].rsplit("/", 1)[-1]
    return "cd" if saw_cd else ""


def _tool_name(action: dict[str, Any]) -> str | None:
    tool = action.get("tool")
    if type(tool) is str and tool:
        return tool
    for key in _NAME_KEYS[1:]:
        tool = action.get(key)
        if isinstance(tool, str) and tool:
            return tool
    return None


def action_verb(action: Any) -> str | None:
    """The normalized action: the tool name, refined by what a shell or code tool ran (``bash:python3``,
    ``ipython:edit_file_by_replace``) or by a one-word sub-command (``str_replace_editor:view``).

    Arguments are left out on purpose (see the module docstring). None when there is no action.
    """
    if not isinstance(action, dict):
        return None
    tool = _tool_name(action)
    if tool is None:
        return "?"
    args = _action_args(action)
    if tool in SHELL_TOOLS:
        command = args.get("command", args.get("cmd"))
        if isinstance(command, str):
            word = _command_word(command)
            return f"{tool}:{word}" if word else tool
        return tool
    if tool in CODE_TOOLS:
        code = args.get("code", args.get("source"))
        if isinstance(code, str):
            for line in code.split("\n"):
                if line.strip():
                    match = _CALL.match(line)
                    return f"{tool}:{match.group(1)}" if match else tool
        return tool
    sub = args.get("command")
    if isinstance(sub, str) and sub and " " not in sub and len(sub) <= 40:
        return f"{tool}:{sub}"
    return tool


def _label(action: dict[str, Any]) -> str:
    """A short readable form of an exact action (verb and arguments) for reports."""
    verb = action_verb(action) or "?"
    args = _action_args(action)
    shown = {k: v for k, v in args.items() if k not in _NAME_KEYS} if args is action else args
    text = _SPACES.sub(" ", orjson.dumps(shown, default=str).decode()) if shown else ""
    label = f"{verb} {text}".strip()
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _error_message(obj: dict[str, Any] | TraceRecord) -> str:
    """A short, comparable statement of a failure: the record's ``error`` (importers), its schema error, or the
    first non-empty line of the observation."""
    for key in ("error", "schema_error"):
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:ERROR_MESSAGE_CHARS]
    observation = obj.get("observation")
    if isinstance(observation, str):
        for line in observation.split("\n"):
            if line.strip():
                return " ".join(line.split())[:ERROR_MESSAGE_CHARS]
    return ""


class _Chain:
    __slots__ = (
        "chain_id",
        "closed",
        "end_estimated",
        "end_ts",
        "episode",
        "failure_class",
        "mechanism",
        "outcome",
        "start_estimated",
        "start_ts",
        "ticks",
    )

    def __init__(self, chain_id: str, episode: str, tick: int, obj: TraceRecord, failure_class: str | None):
        self.chain_id = chain_id
        self.episode = episode
        self.ticks = [tick]
        # interned: a handful of distinct class names, referenced by every chain for the life of the analysis
        self.failure_class = sys.intern(failure_class) if failure_class is not None else None
        self.outcome: Literal["recovered", "death", "open"] = "open"
        self.mechanism: str | None = None
        self.start_ts = float(obj.ts)
        self.start_estimated = obj.ts_estimated is True
        self.end_ts = self.start_ts
        self.end_estimated = self.start_estimated
        self.closed = False

    def add(self, tick: int, obj: TraceRecord) -> None:
        self.ticks.append(tick)
        self.end_ts = float(obj.ts)
        self.end_estimated = obj.ts_estimated is True
        recovery = obj.recovery
        if isinstance(recovery, str) and recovery:
            self.mechanism = sys.intern(recovery)

    def close(self, outcome: Literal["recovered", "death", "open"]) -> None:
        self.outcome = outcome
        self.closed = True


_OUTCOME_CODES: dict[str, int] = {"recovered": 0, "death": 1, "open": 2}
_OUTCOMES: tuple[Literal["recovered", "death", "open"], ...] = ("recovered", "death", "open")


class ChainStore(Sequence[ChainSummary]):
    """Closed recovery chains in columns, each ``ChainSummary`` built only when asked for.

    A large trace holds a chain every few dozen ticks (170,000 in 1 GB); as pydantic objects with their tick lists
    they took over 100 MB, here about 100 bytes each (the chain id string, a few pointers to shared strings, the
    tick numbers in one ``array('q')``). Totals for the report (outcomes, MTTR) are kept as chains come in.
    """

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.episodes: list[str] = []
        self.failure_classes: list[str | None] = []
        self.mechanisms: list[str | None] = []
        self.outcomes = array("b")
        self.seconds = array("d")
        self.tick_ends = array("q")
        self.ticks = array("q")
        self.by_outcome = [0, 0, 0]
        self.recover_ticks = 0
        self.recover_ticks_n = 0
        self.recover_seconds = 0.0
        self.recover_seconds_n = 0

    def add(self, chain: _Chain) -> None:
        outcome = _OUTCOME_CODES[chain.outcome]
        self.ids.append(chain.chain_id)
        self.episodes.append(chain.episode)
        self.failure_classes.append(chain.failure_class)
        self.mechanisms.append(chain.mechanism)
        self.outcomes.append(outcome)
        self.ticks.extend(chain.ticks)
        self.tick_ends.append(len(self.ticks))
        self.by_outcome[outcome] += 1
        seconds = math.nan
        if outcome == 0:
            self.recover_ticks += chain.ticks[-1] - chain.ticks[0]
            self.recover_ticks_n += 1
            if not (chain.start_estimated or chain.end_estimated):
                seconds = round(chain.end_ts - chain.start_ts, 6)
                self.recover_seconds += seconds
                self.recover_seconds_n += 1
        self.seconds.append(seconds)

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> ChainSummary: ...

    @overload
    def __getitem__(self, i: slice) -> list[ChainSummary]: ...

    def __getitem__(self, i: int | slice) -> ChainSummary | list[ChainSummary]:
        if isinstance(i, slice):
            return [self._summary(j) for j in range(*i.indices(len(self.ids)))]
        if i < 0:
            i += len(self.ids)
        if not 0 <= i < len(self.ids):
            raise IndexError(i)
        return self._summary(i)

    def __iter__(self) -> Iterator[ChainSummary]:
        for i in range(len(self.ids)):
            yield self._summary(i)

    def _summary(self, i: int) -> ChainSummary:
        ticks = self.ticks[self.tick_ends[i - 1] if i else 0 : self.tick_ends[i]].tolist()
        outcome = _OUTCOMES[self.outcomes[i]]
        recovered = outcome == "recovered"
        seconds = self.seconds[i]
        # Built without re-validation and with one shared fields-set (see ``_Chain``).
        return ChainSummary.model_construct(
            _CHAIN_FIELDS,
            chain_id=self.ids[i],
            episode=self.episodes[i],
            start_tick=ticks[0],
            end_tick=ticks[-1],
            failure_class=self.failure_classes[i],
            attempts=len(ticks) - 1,
            outcome=outcome,
            ticks_to_recover=ticks[-1] - ticks[0] if recovered else None,
            seconds_to_recover=None if math.isnan(seconds) else seconds,
            mechanism=self.mechanisms[i],
            ticks=ticks,
        )

    def json_items(self) -> Iterator[bytes]:
        """Each chain as a JSON object (the fields of ``ChainSummary``), without building the model."""
        dumps = orjson.dumps
        ticks, ends = self.ticks, self.tick_ends
        for i in range(len(self.ids)):
            chain_ticks = ticks[ends[i - 1] if i else 0 : ends[i]].tolist()
            outcome = _OUTCOMES[self.outcomes[i]]
            recovered = outcome == "recovered"
            seconds = self.seconds[i]
            yield dumps(
                {
                    "chain_id": self.ids[i],
                    "episode": self.episodes[i],
                    "start_tick": chain_ticks[0],
                    "end_tick": chain_ticks[-1],
                    "failure_class": self.failure_classes[i],
                    "attempts": len(chain_ticks) - 1,
                    "outcome": outcome,
                    "ticks_to_recover": chain_ticks[-1] - chain_ticks[0] if recovered else None,
                    "seconds_to_recover": None if math.isnan(seconds) else seconds,
                    "mechanism": self.mechanisms[i],
                    "ticks": chain_ticks,
                }
            )


class _Run:
    """A stretch of repeated failures (thrash or repeated precondition error) not yet ended."""

    __slots__ = ("count", "end", "start")

    def __init__(self, tick: int) -> None:
        self.start = tick
        self.end = tick
        self.count = 1


class _EpisodeState:
    __slots__ = (
        "derived",
        "derived_seq",
        "died_at",
        "done_derived",
        "done_marked",
        "has_marks",
        "key",
        "last_error_class",
        "last_ticks",
        "marked",
        "name",
        "noprogress_len",
        "noprogress_start",
        "open_tools",
        "osc_len",
        "osc_pair",
        "osc_start",
        "prev2_action",
        "prev_action",
        "prev_tick",
        "repeats",
        "seen_observations",
        "thrash",
    )

    def __init__(self, name: str, key: tuple[str, str] | None = None) -> None:
        self.name = name
        self.key = key if key is not None else ("", name)
        self.derived: dict[str, _Chain] = {}
        self.derived_seq = 0
        self.done_derived: list[_Chain] = []
        self.marked: dict[str, _Chain] = {}
        self.done_marked: list[_Chain] = []
        self.has_marks = False
        self.open_tools: set[str] = set()
        self.thrash: dict[str, dict[str, _Run]] = {}
        self.repeats: dict[str, dict[tuple[str, str], _Run]] = {}
        self.noprogress_start = 0
        self.noprogress_len = 0
        self.prev2_action: dict[str, Any] | None = None
        self.prev_tick = -1
        self.osc_start = 0
        self.osc_len = 0
        self.osc_pair: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)
        self.prev_action: dict[str, Any] | None = None
        self.last_ticks: deque[int] = deque(maxlen=LAST_TICKS)
        self.died_at: int | None = None
        self.last_error_class: str | None = None
        self.seen_observations: set[int] | None = None


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
            error_class = obj.error_class
            if not isinstance(error_class, str) or not error_class:
                error_class = "Timeout" if outcome == "timeout" else ("Fatal" if outcome == "death" else "Error")
            self.error_classes[error_class] = self.error_classes.get(error_class, 0) + 1
            st.last_error_class = error_class
            self._failure(st, t, obj, action_verb(action) or INVALID_VERB, error_class)
            if outcome == "death" or obj.chain_role == "death":
                st.died_at = t
        elif st.open_tools and action is not None:
            tool = _tool_name(action) or "?"
            if tool in st.open_tools or INVALID_VERB in st.open_tools:
                self._success(st, t, obj, action_verb(action))
        st.prev_tick = t

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


def analyze_records(
    records: Iterable[dict[str, Any]],
    *,
    file: str = "<memory>",
    deadlock_window: int = DEFAULT_DEADLOCK_WINDOW,
    thrash_min: int = DEFAULT_THRASH_MIN,
    sha256: str = "",
    bad_lines: Iterable[BadLine] = (),
    warmup: int | None = None,
) -> TraceAnalysis:
    """Analyze canonical record dicts (for example from an importer). A record's line is its ``source.line``
    when it has one, else its 1-based position in ``records``; ``bad_lines`` found earlier are carried along."""
    analyzer = TraceAnalyzer(file, deadlock_window=deadlock_window, thrash_min=thrash_min, warmup=warmup)
    _feed_records(analyzer, records, bad_lines)
    return analyzer.finish(sha256)


def _feed_records(analyzer: TraceAnalyzer, records: Iterable[dict[str, Any]], bad_lines: Iterable[BadLine]) -> None:
    file = analyzer.file
    for bad_line in bad_lines:
        analyzer.bad(bad_line)
    for position, obj in enumerate(records, 1):
        source = obj.get("source") if isinstance(obj, dict) else None
        line = source.get("line") if isinstance(source, dict) else None
        if not isinstance(obj, dict):
            analyzer.bad(BadLine(file=file, line=position, reason=f"expected an object, got {type(obj).__name__}"))
            continue
        analyzer.feed(line if isinstance(line, int) else position, obj)


def _stream(path: Path, analyzer: TraceAnalyzer, max_line_bytes: int) -> str:
    """Read ``path`` in batches of lines, decode each line into a ``TraceRecord`` and feed it; returns the sha256.

    Bad lines get the reasons ``reader.iter_records`` gives; blank lines are skipped silently.
    """
    digest = hashlib.sha256()
    file = str(path)
    feed = analyzer.feed
    bad = analyzer.bad
    decode = fast_decoder.decode
    errors = decode_fast_errors
    kinds = RECORD_KINDS
    for item in _iter_line_batches(path, max_line_bytes, digest):
        if isinstance(item, BadLine):
            bad(item)
            continue
        if isinstance(item, _Tail):
            if item.data.strip():
                _feed_slow(analyzer, file, item.line, item.data, torn=True)
            continue
        line_no, lines = item
        if not valid_utf8(b"\n".join(lines)):
            for raw in lines:
                line_no += 1
                _feed_slow(analyzer, file, line_no, raw, torn=False)
            continue
        for raw in lines:
            line_no += 1
            try:
                rec = decode(raw)
            except errors:
                _feed_slow(analyzer, file, line_no, raw, torn=False)
                continue
            kind = rec.kind
            if type(kind) is str and kind in kinds:
                feed(line_no, rec)
            else:  # a bad record: orjson's view of the line names the fault exactly
                _feed_slow(analyzer, file, line_no, raw, torn=False)
    return digest.hexdigest()


def _feed_slow(analyzer: TraceAnalyzer, file: str, line_no: int, raw: bytes, *, torn: bool) -> None:
    """A line the fast decoder did not take: decode it exactly and feed it, or report why it is bad."""
    value = decode_fallback(raw)
    if type(value) is TraceRecord:
        analyzer.feed(line_no, value)
    elif isinstance(value, orjson.JSONDecodeError):
        if torn:
            reason = f"torn last line (no newline at end of file): {_decode_problem(raw, value)}"
            analyzer.bad(BadLine(file=file, line=line_no, reason=reason))
        elif raw.strip():
            analyzer.bad(BadLine(file=file, line=line_no, reason=_decode_problem(raw, value)))
    else:
        reason = f"expected a JSON object, got {type(value).__name__}"
        analyzer.bad(BadLine(file=file, line=line_no, reason=reason))


def analyze(
    path: Path,
    *,
    deadlock_window: int = DEFAULT_DEADLOCK_WINDOW,
    thrash_min: int = DEFAULT_THRASH_MIN,
    fmt: str | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    warmup: int | None = None,
) -> TraceAnalysis:
    """Analyze a canonical trace (streamed) or any file an importer understands (format detected unless given).

    Raises ``OSError`` when the file cannot be read at all and ``importers.UnknownFormat`` when it is a document
    of no known format.
    """
    analysis, chains = analyze_compact(
        path,
        deadlock_window=deadlock_window,
        thrash_min=thrash_min,
        fmt=fmt,
        max_line_bytes=max_line_bytes,
        warmup=warmup,
    )
    analysis.chains = list(chains)
    return analysis


def analyze_compact(
    path: Path,
    *,
    deadlock_window: int = DEFAULT_DEADLOCK_WINDOW,
    thrash_min: int = DEFAULT_THRASH_MIN,
    fmt: str | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    warmup: int | None = None,
) -> tuple[TraceAnalysis, ChainStore]:
    """``analyze`` with the chains in a compact ``ChainStore`` beside an analysis whose ``chains`` is empty: what
    ``phasef trace stats`` uses, so a trace of hundreds of thousands of chains stays within a few dozen MB."""
    from pipeline.traces.importers import detect_format, import_trace

    path = Path(path)
    chosen = fmt or detect_format(path)
    if chosen == "phasef":
        analyzer = TraceAnalyzer(str(path), deadlock_window=deadlock_window, thrash_min=thrash_min, warmup=warmup)
        sha = _stream(path, analyzer, max_line_bytes)
        return analyzer.finish(sha, with_chains=False), analyzer.chains
    records, bad_lines = import_trace(path, chosen)
    analyzer = TraceAnalyzer(str(path), deadlock_window=deadlock_window, thrash_min=thrash_min, warmup=warmup)
    _feed_records(analyzer, records, bad_lines)
    return analyzer.finish(file_sha256(path), with_chains=False), analyzer.chains
