"""Trace analysis on canonical traces built tick by tick, so that every expected finding is known exactly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.traces.analysis import (
    TraceAnalyzer,
    action_verb,
    analyze,
    analyze_records,
)

READ = {"tool": "read_file", "args": {"path": "a.py"}}
LIST = {"tool": "list_dir", "args": {"path": "."}}
TESTS = {"tool": "run_tests", "args": {"target": "tests"}}
LOCK = {"tool": "acquire_lock", "args": {"name": "db"}}


class Trace:
    """Builds canonical records; ticks are numbered per episode and one second apart."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.ticks: dict[str, int] = {}
        self.ts = 1_700_000_000.0

    def start(self, episode: str) -> Trace:
        self.ticks[episode] = 0
        self.records.append({"kind": "episode_start", "episode": episode, "ts": self.ts, "run_id": "r"})
        return self

    def tick(self, episode: str, action: dict[str, Any] | None = READ, **fields: Any) -> Trace:
        self.ts += 1.0
        record = {
            "kind": "tick",
            "run_id": "r",
            "episode": episode,
            "ts": self.ts,
            "tick": self.ticks[episode],
            "action": action,
            "outcome": "ok",
            "progress": True,
            "context_chars": 1000,
        }
        record.update(fields)
        if record["outcome"] != "ok" and "progress" not in fields:
            record["progress"] = False
        self.records.append(record)
        self.ticks[episode] += 1
        return self

    def fail(self, episode: str, action: dict[str, Any] | None, error_class: str, **fields: Any) -> Trace:
        return self.tick(episode, action, outcome="error", error_class=error_class, **fields)

    def end(self, episode: str, outcome: str = "success", **fields: Any) -> Trace:
        self.ts += 1.0
        record = {"kind": "episode_end", "run_id": "r", "episode": episode, "ts": self.ts, "outcome": outcome}
        record.update({"ticks": self.ticks[episode], **fields})
        self.records.append(record)
        return self


def _marked() -> Trace:
    t = Trace().start("e1")
    t.tick("e1")
    t.fail("e1", TESTS, "Timeout", chain_id="c1", chain_role="failure", trap="hang")
    t.fail("e1", TESTS, "Timeout", chain_id="c1", chain_role="attempt", recovery="reflex")
    t.tick("e1", TESTS, chain_id="c1", chain_role="recovered", recovery="watchdog")
    t.fail("e1", LIST, "NotFound", chain_id="c2", chain_role="failure")
    t.tick("e1", None, outcome="death", error_class="Fatal", chain_id="c2", chain_role="death")
    return t.end("e1", "death", reason="fatal action", error_class="Fatal")


def test_marked_chains_are_used_as_written() -> None:
    a = analyze_records(_marked().records)
    c1, c2 = a.chains
    assert c1.model_dump() == {
        "chain_id": "c1",
        "episode": "e1",
        "start_tick": 1,
        "end_tick": 3,
        "failure_class": "Timeout",
        "attempts": 2,
        "outcome": "recovered",
        "ticks_to_recover": 2,
        "seconds_to_recover": 2.0,
        "mechanism": "watchdog",
        "ticks": [1, 2, 3],
    }
    assert (c2.chain_id, c2.outcome, c2.ticks, c2.ticks_to_recover, c2.failure_class) == (
        "c2",
        "death",
        [4, 5],
        None,
        "NotFound",
    )
    assert a.mttr_ticks == 2.0 and a.mttr_seconds == 2.0
    assert a.traps == {"hang": 1}
    assert a.error_classes == {"Timeout": 2, "Fatal": 1, "NotFound": 1}
    (death,) = a.deaths
    assert death.model_dump() == {
        "episode": "e1",
        "tick": 5,
        "reason": "fatal action",
        "error_class": "Fatal",
        "last_ticks": [0, 1, 2, 3, 4, 5],
    }


def _strip_marks(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ("chain_id", "chain_role")} for r in records]


def test_chains_are_derived_from_outcomes_when_marks_are_absent() -> None:
    t = Trace().start("e")
    t.tick("e", LIST)  # 0
    t.fail("e", READ, "NotFound")  # 1: opens a chain on read_file
    t.fail("e", READ, "NotFound")  # 2: attempt
    t.tick("e", LIST)  # 3: another action succeeding does not recover read_file
    t.tick("e", READ)  # 4: read_file succeeds: recovered
    t.fail("e", None, "SchemaViolation", schema_error="not JSON")  # 5: no parsable action
    t.tick("e", TESTS)  # 6: any successful action recovers a schema violation
    t.fail("e", TESTS, "CheckFailed")  # 7: never recovered before the end
    t.end("e", "failure")
    a = analyze_records(t.records)
    summary = [(c.chain_id, c.ticks, c.attempts, c.outcome, c.ticks_to_recover, c.failure_class) for c in a.chains]
    assert summary == [
        ("e:auto-1", [1, 2, 4], 2, "recovered", 3, "NotFound"),
        ("e:auto-2", [5, 6], 1, "recovered", 1, "SchemaViolation"),
        ("e:auto-3", [7], 0, "open", None, "CheckFailed"),
    ]
    assert a.mttr_ticks == 2.0
    assert a.deaths == []  # a failure is not a death


def test_derived_chains_of_a_marked_trace_follow_its_marks() -> None:
    derived = analyze_records(_strip_marks(_marked().records))
    # the marked chains, plus the fatal tick on its own: without marks nothing says it belongs to chain c2
    assert [(c.ticks, c.outcome) for c in derived.chains] == [
        ([1, 2, 3], "recovered"),
        ([4], "death"),
        ([5], "death"),
    ]


def test_open_chain_dies_with_its_episode_and_stays_open_when_the_trace_is_cut() -> None:
    died = Trace().start("e").fail("e", READ, "NotFound").end("e", "death")
    assert [c.outcome for c in analyze_records(died.records).chains] == ["death"]
    assert analyze_records(died.records).deaths[0].reason == "episode outcome death"
    out_of_ticks = Trace().start("e").fail("e", READ, "NotFound").end("e", "timeout")
    a = analyze_records(out_of_ticks.records)
    assert [c.outcome for c in a.chains] == ["open"] and a.deaths == []  # stopped alive: not a death
    cut = Trace().start("e").fail("e", READ, "NotFound")  # no episode_end: still being written
    a = analyze_records(cut.records)
    assert [c.outcome for c in a.chains] == ["open"] and a.deaths == []


def test_thrashing_needs_the_same_verb_and_class_thrash_min_times() -> None:
    respond = {"tool": "respond", "args": {"content": "sorry"}}
    t = Trace().start("e")
    for _ in range(3):
        t.fail("e", TESTS | {"args": {"target": "tests/a.py"}}, "CheckFailed")
        t.tick("e", respond)  # talking in between does not end the thrash
    t.tick("e", TESTS)
    t.fail("e", READ, "NotFound").fail("e", READ, "NotFound").tick("e", READ)
    t.end("e")
    a = analyze_records(t.records)
    assert [(x.action, x.error_class, x.count, x.start_tick, x.end_tick) for x in a.thrash] == [
        ("run_tests", "CheckFailed", 3, 0, 4)
    ]
    lower = analyze_records(t.records, thrash_min=2)
    assert [(x.action, x.count) for x in lower.thrash] == [("run_tests", 3), ("read_file", 2)]


def test_oscillation_is_two_exact_actions_alternating() -> None:
    t = Trace().start("e")
    for action in (LIST, READ, LIST, READ, LIST, TESTS):
        t.tick("e", action)
    t.end("e")
    (osc,) = analyze_records(t.records).oscillations
    assert (osc.start_tick, osc.end_tick) == (0, 4)
    assert osc.actions == ['list_dir {"path":"."}', 'read_file {"path":"a.py"}']

    same = Trace().start("e")
    for _ in range(5):
        same.tick("e", LIST)
    cycle = Trace().start("e")
    for action in (LIST, READ, TESTS, LIST, READ, TESTS):
        cycle.tick("e", action)
    other_file = Trace().start("e")
    for path in ("a", "b", "a", "c"):
        other_file.tick("e", {"tool": "read_file", "args": {"path": path}})
    for trace in (same, cycle, other_file):
        assert analyze_records(trace.records).oscillations == []


def test_deadlock_no_progress_window() -> None:
    t = Trace().start("e")
    t.tick("e")
    for i in range(8):
        t.tick("e", {"tool": "wait", "args": {"i": i}}, progress=False)
    t.tick("e")
    for i in range(7):
        t.tick("e", {"tool": "wait", "args": {"i": i}}, progress=False)
    t.end("e")
    a = analyze_records(t.records)
    assert [(d.start_tick, d.end_tick, d.reason) for d in a.deadlocks] == [(1, 8, "no progress for 8 ticks")]
    assert len(analyze_records(t.records, deadlock_window=7).deadlocks) == 2


def test_deadlock_same_precondition_error_repeated() -> None:
    t = Trace().start("e")
    for _ in range(3):
        t.fail("e", LOCK, "Deadlock", observation="lock db held by another process\npid 7")
        t.tick("e", LIST)
    t.tick("e", LOCK)
    for _ in range(3):  # the agent's own output failing repeatedly is thrash, not a deadlock
        t.fail("e", TESTS, "CheckFailed", observation="1 failed")
    t.end("e")
    a = analyze_records(t.records)
    assert [(d.start_tick, d.end_tick, d.reason) for d in a.deadlocks] == [
        (0, 4, "same Deadlock repeated 3 times on acquire_lock: lock db held by another process")
    ]
    assert {x.error_class for x in a.thrash} == {"Deadlock", "CheckFailed"}


def test_progress_is_derived_from_new_observations_when_records_do_not_say() -> None:
    t = Trace().start("e")
    for i in range(9):
        t.tick("e", {"tool": "poll", "args": {"i": i}}, observation="still running")
    t.end("e")
    for record in t.records:
        record.pop("progress", None)
    (deadlock,) = analyze_records(t.records).deadlocks
    assert (deadlock.start_tick, deadlock.reason) == (1, "no progress for 8 ticks")


def _context_trace(unbounded: bool, ticks: int = 60, window: int = 6) -> list[dict[str, Any]]:
    """Ticks carrying the chat messages the model saw: a sliding window, or the whole history."""
    t = Trace()
    for e in range(3):
        episode = f"e{e}"
        t.start(episode)
        history: list[dict[str, Any]] = []
        for i in range(ticks):
            shown = history if unbounded else history[-window:]
            context = [{"role": "system", "content": "s" * 1500}, *shown]
            t.tick(episode, {"tool": "step", "args": {"i": i}}, context=context)
            del t.records[-1]["context_chars"]
            history.append({"role": "user", "content": "o" * (200 + (i * 97 + e * 31) % 400)})
        t.end(episode)
    return t.records


def test_context_profile_bounded_window_passes_and_unbounded_prompt_fails() -> None:
    bounded = analyze_records(_context_trace(unbounded=False)).context
    assert bounded.bounded is True and bounded.samples == 180
    assert abs(bounded.growth_per_tick) < 5
    grown = analyze_records(_context_trace(unbounded=True)).context
    assert grown.bounded is False
    assert grown.growth_per_tick > 300 and grown.late_mean > 3 * grown.early_mean
    assert grown.max_chars == max(1500 + sum(200 + (i * 97 + e * 31) % 400 for i in range(59)) for e in range(3))


def test_context_bound_fails_closed_without_evidence() -> None:
    no_sizes = Trace().start("e").tick("e", context_chars=None).end("e")
    assert analyze_records(no_sizes.records).context.bounded is False
    short = Trace().start("e")
    for _ in range(5):
        short.tick("e")
    assert analyze_records(short.end("e").records).context.bounded is False  # 5 ticks show no bound
    reflex = Trace().start("e")
    for i in range(10):  # ticks where no model was called carry no prompt and are no sample
        reflex.tick("e", context_chars=0 if i % 2 else 1200, actor="reflex" if i % 2 else "model")
    profile = analyze_records(reflex.end("e").records).context
    assert (profile.samples, profile.mean_chars, profile.max_chars) == (5, 1200.0, 1200)


def test_end_of_an_episode_of_another_run_leaves_the_growth_fit_of_this_one_open() -> None:
    """An ``episode_end`` of run "other" for an episode with no other record ends that episode only: the growth fit
    of the open episode of the same name without a run goes on through it (one fit, not two halves)."""
    t = Trace().start("e")
    for i in range(24):
        t.tick("e", context_chars=1000 + i * i)  # curved: one fit over all ticks differs from two halves
    for record in t.end("e").records:
        del record["run_id"]
    whole = analyze_records(t.records)
    stray = {"kind": "episode_end", "run_id": "other", "episode": "e", "ts": t.ts, "outcome": "success"}
    with_stray = analyze_records([*t.records[:13], stray, *t.records[13:]])
    assert with_stray.episodes == whole.episodes + 1 == 2
    assert with_stray.context == whole.context
    assert whole.context.growth_per_tick > 0


def test_bad_records_are_reported_with_line_and_field_and_the_rest_is_analyzed(tmp_path: Path) -> None:
    good = _marked().records
    lines = [json.dumps(r) for r in good]
    bad_records = [
        {"kind": "tick", "episode": "e1", "ts": 1.0, "tick": 9},  # no outcome
        {"kind": "tick", "episode": "e1", "ts": 1.0, "tick": -1, "outcome": "ok"},
        {"kind": "thought", "episode": "e1", "ts": 1.0},
        {"kind": "tick", "ts": 1.0, "tick": 3, "outcome": "ok"},
        {"kind": "episode_end", "episode": "e9", "ts": "yesterday", "outcome": "success"},
        {"kind": "tick", "episode": "e1", "ts": 1.0, "tick": 2, "outcome": "ok", "chain_role": "retry"},
        {"schema": "phasef.dirty_trace/0", "kind": "tick", "episode": "e1", "ts": 1.0, "tick": 1, "outcome": "ok"},
    ]
    content = "\n".join(lines[:3] + [json.dumps(b) for b in bad_records] + lines[3:]) + "\n"
    path = tmp_path / "trace.jsonl"
    path.write_bytes(content.encode() + b"not json at all\n" + b'{"kind": "tick", "epi')
    a = analyze(path)
    reasons = [(b.line, b.reason) for b in a.bad_lines]
    assert reasons == [
        (4, "field 'outcome': expected one of ['death', 'error', 'ok', 'success', 'timeout'], missing"),
        (5, "field 'tick': expected an integer >= 0, got -1"),
        (6, "field 'kind': expected one of ['episode_end', 'episode_start', 'tick'], got 'thought'"),
        (7, "field 'episode': missing"),
        (8, "field 'ts': expected a number, got str"),
        (9, "field 'chain_role': expected one of ['attempt', 'death', 'failure', 'recovered'], got 'retry'"),
        (10, "field 'schema': unsupported version 'phasef.dirty_trace/0' (expected 'phasef.dirty_trace/1')"),
        (16, "invalid JSON at column 1: invalid literal, expected 'null'"),
        (17, "torn last line (no newline at end of file): invalid JSON at column 22: unexpected end of data"),
    ]
    assert all(b.file == str(path) for b in a.bad_lines)
    clean = analyze_records(good)
    assert a.records == len(good) and a.chains == clean.chains and a.deaths == clean.deaths
    assert a.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_analyze_streams_the_same_result_as_analyze_records(tmp_path: Path) -> None:
    t = _marked()
    t.start("e2").fail("e2", READ, "NotFound").fail("e2", READ, "NotFound").fail("e2", READ, "NotFound")
    t.tick("e2", READ).end("e2")
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in t.records))
    from_file = analyze(path)
    from_memory = analyze_records(t.records, file=str(path), sha256=from_file.sha256)
    assert from_file == from_memory
    assert from_file.episodes == 2 and from_file.ticks == 10 and from_file.records == 14


def test_episode_state_is_dropped_at_episode_end() -> None:
    analyzer = TraceAnalyzer("<memory>")
    t = Trace()
    for e in range(50):
        episode = f"e{e}"
        t.start(episode).fail(episode, READ, "NotFound").tick(episode).end(episode)
    for line, record in enumerate(t.records, 1):
        analyzer.feed(line, record)
        assert len(analyzer.open) <= 1
    result = analyzer.finish()
    assert result.episodes == 50 and len(result.chains) == 50


@pytest.mark.parametrize(
    ("action", "verb"),
    [
        (None, None),
        ({"tool": "read_file", "args": {"path": "x"}}, "read_file"),
        ({"tool": "bash", "args": {"command": "cd /repo && FOO=1 python3 -m pytest -x"}}, "bash:python3"),
        ({"tool": "bash", "args": {"command": "edit 287:295\n    required = [\nend_of_edit"}}, "bash:edit"),
        ({"tool": "bash", "args": {"command": "/usr/bin/cat a | grep b"}}, "bash:cat"),
        ({"tool": "ipython", "args": {"code": "\nedit_file_by_replace(\n'a.py')"}}, "ipython:edit_file_by_replace"),
        ({"tool": "ipython", "args": {"code": "x = open_file('a.py')"}}, "ipython:open_file"),
        ({"tool": "str_replace_editor", "args": {"command": "view", "path": "/a"}}, "str_replace_editor:view"),
        ({"name": "search", "arguments": {"q": "x"}}, "search"),
        ({"act": "read", "arg": "src/a.py"}, "read"),
        ({"args": {}}, "?"),
    ],
)
def test_action_verb(action: dict[str, Any] | None, verb: str | None) -> None:
    assert action_verb(action) == verb
