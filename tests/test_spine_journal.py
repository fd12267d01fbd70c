"""The journal: durable appends, replay, torn last lines and garbage lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.journal import Event, Journal, JournalProblem, JournalTail, SessionLocked, read_journal
from pipeline.state import load_state, replay


def _write_events(session: Path, n: int) -> None:
    with Journal(session) as j:
        for i in range(n):
            j.append("step_started", stage="A", step=f"s{i}", attempt=1, payload={"pid": 100 + i})


def test_append_and_replay(tmp_path: Path) -> None:
    _write_events(tmp_path, 3)
    events = [e for e in read_journal(tmp_path / "journal.jsonl") if isinstance(e, Event)]
    assert [e.seq for e in events] == [1, 2, 3]
    state = load_state(tmp_path)
    assert set(state.steps) == {"A.s0", "A.s1", "A.s2"}
    assert state.steps["A.s1"].attempts == 1 and state.steps["A.s1"].state == "running"


def test_torn_last_line_is_reported_by_readers_and_set_aside_by_writers(tmp_path: Path) -> None:
    _write_events(tmp_path, 2)
    path = tmp_path / "journal.jsonl"
    with open(path, "ab") as fh:
        fh.write(b'{"seq": 3, "ts": "2026-01-01T00:00:00Z", "type": "step_succ')
    items = list(read_journal(path))
    assert sum(isinstance(i, Event) for i in items) == 2
    problems = [i for i in items if isinstance(i, JournalProblem)]
    assert len(problems) == 1 and problems[0].line == 3 and "torn last line" in problems[0].reason
    state = replay(items, "x")
    assert any("torn" in p for p in state.problems)
    with Journal(tmp_path) as j:  # a writer repairs: the torn bytes move aside, nothing is lost
        assert j.seq == 3  # the repair itself is journaled as event 3
        j.append("run_cancel_requested", payload={"operator": "erin"})
    side = list(tmp_path.glob("journal.torn-*.bin"))
    assert len(side) == 1 and side[0].read_bytes().startswith(b'{"seq": 3')
    events = [e for e in read_journal(path) if isinstance(e, Event)]
    assert [e.type for e in events][-2:] == ["journal_repaired", "run_cancel_requested"]
    assert events[-2].payload["saved_to"] == side[0].name


def test_garbage_line_in_the_middle_is_reported_and_skipped(tmp_path: Path) -> None:
    _write_events(tmp_path, 2)
    path = tmp_path / "journal.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"\x00garbage \xff not json\n" + b'{"seq": "x"}\n' + lines[1])
    items = list(read_journal(path))
    problems = [str(i) for i in items if isinstance(i, JournalProblem)]
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}:2: not valid JSON")
    assert problems[1].startswith(f"{path}:3: field 'seq'")
    state = load_state(tmp_path)
    assert set(state.steps) == {"A.s0", "A.s1"}
    assert len(state.problems) == 2


def test_single_writer_lock(tmp_path: Path) -> None:
    with Journal(tmp_path):
        with pytest.raises(SessionLocked):
            Journal(tmp_path)


def test_tail_sees_only_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    tail = JournalTail(path)
    assert tail.poll() == []
    event = {"seq": 1, "ts": "t", "type": "step_progress", "stage": "A", "step": "s", "payload": {"event": "x"}}
    raw = json.dumps(event).encode()
    path.write_bytes(raw[:10])
    assert tail.poll() == []
    with open(path, "ab") as fh:
        fh.write(raw[10:] + b"\n")
    got = tail.poll()
    assert len(got) == 1 and isinstance(got[0], Event) and got[0].type == "step_progress"
