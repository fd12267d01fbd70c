"""Following files with watchfiles: the trace indexer and the journal reader wake on the write itself; where
watchfiles cannot run they poll as before."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from phasef_tui.session_source import SessionSource
from phasef_tui.trace_feed import TraceFeed
from pipeline.journal import Journal
from pipeline.watch import FileWatch
from tests.test_tui_session import write_session
from tests.tui_helpers import append_records, many_ticks, wait_for, write_trace


def append_later(path: Path, delay: float) -> threading.Thread:
    def write() -> None:
        time.sleep(delay)
        with open(path, "a") as fh:
            fh.write("x\n")

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_a_write_wakes_the_reader_long_before_its_polling_interval(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_text("")
    watch = FileWatch(path)
    try:
        assert watch.wait_ready() and watch.mode == "watchfiles"
        writer = append_later(path, 0.2)
        started = time.monotonic()
        assert watch.wait(30.0) is True, "woken by the write, not by the 30 s interval"
        assert time.monotonic() - started < 5.0
        writer.join()
        other = append_later(tmp_path / "unrelated.txt", 0.05)  # another file in the folder wakes nobody
        other.join()
        started = time.monotonic()
        assert watch.wait(0.1) is False and time.monotonic() - started >= 0.1
    finally:
        watch.close()
    assert watch.mode == "polling"


def test_without_watchfiles_it_polls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import fails as if not installed
    path = tmp_path / "trace.jsonl"
    path.write_text("")
    watch = FileWatch(path)
    assert watch.mode == "polling" and "not installed" in (watch.error or "")
    started = time.monotonic()
    assert watch.wait(0.05) is False and 0.04 <= time.monotonic() - started < 2.0
    watch.close()


@pytest.mark.parametrize("watchfiles_there", [True, False])
def test_a_followed_trace_sees_appended_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watchfiles_there: bool
) -> None:
    if not watchfiles_there:
        monkeypatch.setitem(sys.modules, "watchfiles", None)
    path = write_trace(tmp_path / "t.jsonl", many_ticks("e1", 10))
    feed = TraceFeed(path, follow=True)
    feed.start()
    try:
        assert feed.watch is not None
        assert feed.watch.mode == ("watchfiles" if watchfiles_there else "polling")
        assert wait_for(lambda: len(feed.index) == 10, 10)
        append_records(path, many_ticks("e1", 5, first=10))
        assert wait_for(lambda: len(feed.index) == 15, 10)
    finally:
        feed.stop()


def test_the_journal_reader_wakes_on_a_journal_write(tmp_path: Path) -> None:
    folder = write_session(tmp_path / "s")
    source = SessionSource(folder, operator="alice")
    source.start()
    try:
        assert source._watch is not None and source._watch.wait_ready()
        before = source.version
        with Journal(folder, fsync=False) as journal:
            journal.append("step_started", stage="B", step="audit", attempt=1, payload={})
        assert wait_for(lambda: source.version > before, 10)
    finally:
        source.stop()
