"""Filter line lists 4 bytes a line, widened to 8 for good once line numbers pass 2**31 (in-process and from a
worker's answer); a filtered selection takes both."""

from __future__ import annotations

from pathlib import Path

import pytest

from phasef_tui.trace_feed import LineSelection
from pipeline.traces.index import TraceIndex
from pipeline.traces.index_workers import apply_delta
from pipeline.traces.summary import _summarize_batch
from pipeline.traces.summary_columns import FLAG_BAD_LINE, FLAG_DEATH, INT32_MAX, _Summaries, flag_lines_upto
from pipeline.traces.summary_worker import summarize_delta

LINES = [b'{"kind": "tick", "episode": "e1", "tick": 1}', b"not json", b"", b"{broken", b'{"kind": "tick"}']
BAD = [1, 3]


def test_flag_lines_are_32_bit_below_2_31_lines() -> None:
    s = _Summaries()
    _summarize_batch(s, 0, LINES)
    assert s.flag_lines[FLAG_BAD_LINE].typecode == "i"
    assert s.flag_lines[FLAG_BAD_LINE].tolist() == BAD
    assert s.flag_lines[FLAG_DEATH].itemsize == 4


@pytest.mark.parametrize("first", [INT32_MAX - 10, INT32_MAX - 2, INT32_MAX + 5])
def test_in_process_lines_past_2_31_widen_the_lists(first: int) -> None:
    s = _Summaries()
    _summarize_batch(s, 0, LINES)  # narrow lines first: kept when widened
    _summarize_batch(s, first, LINES)
    lines = s.flag_lines[FLAG_BAD_LINE]
    assert lines.tolist() == BAD + [first + i for i in BAD]
    assert lines.typecode == ("q" if first + len(LINES) - 1 > INT32_MAX else "i")
    assert all(flag_lines.typecode == lines.typecode for flag_lines in s.flag_lines.values())


@pytest.mark.parametrize("first", [0, INT32_MAX - 2])
def test_a_worker_answer_past_2_31_widens_the_lists(first: int) -> None:
    viewer = _Summaries()
    apply_delta(viewer, summarize_delta(_Summaries(), first, list(LINES)))
    lines = viewer.flag_lines[FLAG_BAD_LINE]
    assert lines.tolist() == [first + i for i in BAD]
    assert lines.typecode == ("q" if first else "i")
    assert viewer.flagged_upto == first + len(LINES)


def test_a_selection_takes_narrow_then_widened_lists(tmp_path: Path) -> None:
    """``LineSelection.update`` extends its 64-bit array with the index's 32-bit lists, and with them widened."""
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(LINES) + b"\n")
    index = TraceIndex(path)
    while index.work_step():
        pass
    selection = LineSelection(index, frozenset({"bad_line"}))
    assert selection.update()
    assert list(selection.lines) == BAD and index.flag_lines(FLAG_BAD_LINE).typecode == "i"
    with path.open("ab") as f:
        f.write(b"{more\n")
    assert index.check_file() == "grown"
    flag_lines_upto(index.summaries, INT32_MAX + 2)  # as past 2**31 lines: the same lines, 64-bit
    while index.work_step():
        pass
    assert index.flag_lines(FLAG_BAD_LINE).typecode == "q"
    assert selection.update()
    assert list(selection.lines) == [*BAD, len(LINES)]
