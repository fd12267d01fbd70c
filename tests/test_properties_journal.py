"""Property tests of the journal reader and the state replay: torn, garbage and reordered lines give problems
that name the file and line (or the event), never a traceback; good events around them are all kept."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.journal import Event, JournalProblem, read_journal
from pipeline.state import load_state, replay

TYPES = [
    "session_started",
    "step_started",
    "step_progress",
    "step_succeeded",
    "step_failed",
    "step_cancelled",
    "step_blocked",
    "step_skipped",
    "gate_opened",
    "gate_decided",
    "gate_refused",
    "gate_timed_out",
    "service_started",
    "service_failed",
    "service_stopped",
    "run_finished",
    "something_new",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
PAYLOAD_KEYS = ["plan", "name", "outputs", "summary", "prompt", "evidence", "deadline", "decision", "operator",
                "reason", "retry_at", "state", "exit_code", "pid", "url", "error", "fingerprint"]  # fmt: skip
payloads = st.dictionaries(st.sampled_from(PAYLOAD_KEYS), json_values, max_size=5)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "seq": draw(st.integers(-5, 10_000)),
        "ts": draw(st.sampled_from(["2026-01-01T00:00:00.000Z", "", "yesterday"])),
        "type": draw(st.sampled_from(TYPES)),
        "stage": draw(st.sampled_from([None, "A", "B", ""])),
        "step": draw(st.sampled_from([None, "work", "gate"])),
        "attempt": draw(st.none() | st.integers(-1, 5)),
        "payload": draw(payloads),
    }


garbage = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b""))
lines = st.lists(
    st.one_of(
        events().map(lambda e: json.dumps(e).encode()),
        garbage,
        json_values.map(lambda v: json.dumps(v).encode()),
    ),
    max_size=30,
)


def _write(data: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="journal-prop-"))
    (folder / "journal.jsonl").write_bytes(data)
    return folder


@given(lines, st.binary(max_size=100), st.randoms())
def test_read_and_replay_never_raise(body: list[bytes], tail: bytes, rnd: Any) -> None:
    rnd.shuffle(body)  # reordered lines
    data = b"".join(line + b"\n" for line in body) + tail.replace(b"\n", b"")
    folder = _write(data)
    path = folder / "journal.jsonl"
    items = list(read_journal(path))
    good = [i for i in items if isinstance(i, Event)]
    problems = [i for i in items if isinstance(i, JournalProblem)]
    for problem in problems:
        assert problem.file == str(path) and 1 <= problem.line <= len(body) + 1 and problem.reason
    if tail.replace(b"\n", b"").strip():
        assert problems and problems[-1].reason.startswith("torn last line")
    non_blank = sum(1 for line in body if line.strip())
    assert len(good) + len(problems) >= non_blank  # every non-blank line is an event or a problem
    state = replay(items, "s")
    assert len(state.problems) >= len(problems)
    assert all(isinstance(p, str) and p for p in state.problems)
    loaded = load_state(folder)
    assert loaded.public()["schema"] == "phasef.status/1"


def test_a_runaway_line_is_skipped_without_holding_it(tmp_path: Path) -> None:
    from pipeline import journal

    event = json.dumps({"seq": 1, "ts": "t", "type": "run_cancel_requested"}).encode()
    path = tmp_path / "journal.jsonl"
    path.write_bytes(event + b"\n" + b"x" * (journal.MAX_EVENT_BYTES + 10) + b"\n" + event + b"\n")
    items = list(read_journal(path))
    assert [type(i) for i in items] == [Event, JournalProblem, Event]
    assert isinstance(items[1], JournalProblem) and items[1].line == 2 and "line too long" in items[1].reason
