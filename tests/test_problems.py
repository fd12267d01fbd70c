"""One problem type: the journal, trace and chat-data readers report a bad line the same way."""

from __future__ import annotations

from pathlib import Path

from pipeline.journal import read_journal
from pipeline.problems import Problem
from pipeline.traces.reader import iter_records
from pipeline.train.chat_data import read_json_objects


def test_every_reader_reports_a_bad_line_as_a_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"seq": 1, "ts": "t", "type": "run_cancel_requested", "payload": {}}\n{not json\n')
    found = [
        next(p for p in read_journal(bad) if isinstance(p, Problem)),
        next(p for p in iter_records(bad) if isinstance(p, Problem)),
        next(p for p in read_json_objects(bad) if isinstance(p, Problem)),
    ]
    assert all(type(p) is Problem and p.file == str(bad) and p.line == 2 for p in found), found
    assert all(str(p).startswith(f"{bad}:2: ") for p in found)


def test_a_problem_names_its_field_when_it_has_one() -> None:
    assert str(Problem("c.toml", 7, "unknown key", field="tui.keys.x")) == "c.toml:7: tui.keys.x: unknown key"
    assert str(Problem("c.toml", None, "cannot read")) == "c.toml: cannot read"
