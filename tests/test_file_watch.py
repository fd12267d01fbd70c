"""Following files by the kernel's events: the trace indexer and the journal reader wake on the write itself
(inotify on Linux, ``watchfiles`` elsewhere); where neither can run they poll as before."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from phasef_tui.session_source import SessionSource
from phasef_tui.trace_feed import TraceFeed
from pipeline.journal import Journal
from pipeline.watch import FileWatch, Mode, inotify_available
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


@pytest.mark.parametrize("backend", ["inotify", "watchfiles"])
def test_a_write_wakes_the_reader_long_before_its_polling_interval(tmp_path: Path, backend: Mode) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_text("")
    watch = FileWatch(path, backends=(backend,))
    try:
        assert watch.wait_ready() and watch.mode == backend
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
    watch = FileWatch(path, backends=("watchfiles",))
    assert watch.mode == "polling" and "not installed" in (watch.error or "")
    started = time.monotonic()
    assert watch.wait(0.05) is False and 0.04 <= time.monotonic() - started < 2.0
    watch.close()


@pytest.mark.parametrize("watchfiles_there", [True, False])  # on Linux inotify needs no watchfiles
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
        assert feed.watch.mode == ("inotify" if inotify_available() else "watchfiles")
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


def _switches(thread: threading.Thread) -> int:
    """How many times the thread has gone to sleep and woken (voluntary context switches, from /proc)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


@pytest.mark.skipif(not inotify_available(), reason="inotify is Linux's")
def test_an_idle_inotify_watcher_does_not_wake_at_all(tmp_path: Path) -> None:
    """While the file does not change the watcher thread sleeps in the kernel: no wake-ups (``watchfiles``' loop
    wakes every ``STEP_MS``, the measure is that it does here); a write still wakes it at once."""
    path = tmp_path / "journal.jsonl"
    path.write_text("")
    counts: dict[str, int] = {}
    for backend in ("inotify", "watchfiles"):
        watch = FileWatch(path, backends=(backend,))  # type: ignore[arg-type]
        try:
            assert watch.wait_ready() and watch._thread is not None
            time.sleep(0.2)
            before = _switches(watch._thread)
            time.sleep(1.0)
            counts[backend] = _switches(watch._thread) - before
            writer = append_later(path, 0.05)
            assert watch.wait(30.0) is True
            writer.join()
        finally:
            watch.close()
    assert counts["inotify"] <= 1, counts
    assert counts["watchfiles"] >= 5, counts  # the measure sees wake-ups where there are some


@pytest.mark.skipif(not inotify_available(), reason="inotify is Linux's")
def test_inotify_replaced_file_wakes_and_a_removed_folder_falls_back_to_polling(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / "trace.jsonl"
    path.write_text("a\n")
    watch = FileWatch(path, backends=("inotify",))
    try:
        assert watch.wait_ready() and watch.mode == "inotify"
        (folder / "trace.jsonl.tmp").write_text("b\n")
        assert watch.wait(0.3) is False  # another name in the folder wakes nobody
        (folder / "trace.jsonl.tmp").rename(path)  # replaced by a rename, as atomic writers do
        assert watch.wait(30.0) is True
        path.unlink()
        folder.rmdir()
        assert watch.wait(30.0) is True  # the folder went: the waiter is woken and told to look
        assert wait_for(lambda: watch.mode == "polling", 5)
        assert "removed or moved" in (watch.error or "")
        watch.wait(0)  # (the end of the watcher wakes its waiter once more)
        started = time.monotonic()
        assert watch.wait(0.05) is False and time.monotonic() - started < 2.0  # polls at the caller's interval
    finally:
        watch.close()
