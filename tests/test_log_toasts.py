"""Warnings logged while a TUI runs: a notification on screen, printed once the terminal is back, never written over
the screen (``phasef_tui.log_toasts``, ``cli.CurrentStderr``)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import threading
from pathlib import Path

import pytest

from phasef_tui import log_toasts
from phasef_tui.cli import CurrentStderr, configure_logging
from phasef_tui.log_toasts import BURST, KEPT, REPEAT_S, ToastHandler, print_kept, show_warnings
from tests.tui_helpers import read_pty, sample_records, start_in_pty, write_trace

WARN_AFTER_FIRST_FRAME = """
import logging, sys, threading
import textual.drivers.linux_driver as linux_driver

real_write = linux_driver.LinuxDriver.write
warned = []

def warn() -> None:
    logging.getLogger("phasef.test").warning("the follower fell back to polling")

def write(self, data):
    real_write(self, data)
    if not warned and "\\x1b[1;1H" in data:  # the first frame is out: a library warns, from another thread
        warned.append(True)
        threading.Thread(target=warn).start()

linux_driver.LinuxDriver.write = write
from phasef_tui.cli import main
sys.exit(main(["trace", "view", sys.argv[1]]))
"""


def test_a_warning_while_the_viewer_runs_is_a_notification_then_printed_after_the_screen(tmp_path: Path) -> None:
    """The real CLI's viewer in a pty: the warning shows as a notification, is not written over the screen (the
    CLI's handler writes to the stderr of the moment: Textual's capture), and is printed once the viewer has left the
    alternate screen."""
    trace = write_trace(tmp_path / "t.jsonl", sample_records())
    proc, master = start_in_pty(["-c", WARN_AFTER_FIRST_FRAME, str(trace)], tmp_path, {"PHASEF_STARTUP_CACHE": "0"})
    sent_quit: list[bool] = []

    def quit_once_shown(out: bytes, pty: int) -> None:
        if not sent_quit and b"fell back to polling" in out:
            os.write(pty, b"q")
            sent_quit.append(True)

    output = read_pty(proc, master, react=quit_once_shown)
    assert sent_quit, output[-2000:]
    assert proc.returncode == 0
    text = output.decode("utf-8", "replace")
    line = "WARNING phasef.test: the follower fell back to polling"
    left_screen = text.rindex("\x1b[?1049l")
    assert "phasef.test" not in text[:left_screen]  # nothing written over the screen (in any format)
    assert text.index("fell back to polling") < left_screen  # a notification: the message, without the logger
    assert text.count(line) == 1 and text.index(line) > left_screen  # printed after the screen, once


def _record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("phasef.test", level, __file__, 1, message, None, None)


def test_the_toasts_show_a_warning_once_per_repeat_and_hold_back_a_burst() -> None:
    loop = asyncio.new_event_loop()
    now = [100.0]
    shown: list[tuple[str, str, str]] = []
    handler = ToastHandler(clock=lambda: now[0]).bind(lambda *args: shown.append(args), loop)
    try:
        handler.emit(_record("disk almost full"))
        handler.emit(_record("disk almost full"))  # the same, at once: on screen already
        handler.emit(_record("fell back to polling"))
        handler.emit(_record("cannot write the cache", logging.ERROR))
        handler.emit(_record("a fourth within the burst"))  # held back
        handler.emit(_record("a fifth within the burst"))  # held back
        loop.run_until_complete(asyncio.sleep(0))
        assert shown == [
            ("disk almost full", "warning", "warning"),
            ("fell back to polling", "warning", "warning"),
            ("cannot write the cache", "error", "error"),
        ]
        assert len(shown) == BURST
        now[0] += REPEAT_S
        handler.emit(_record("disk almost full"))  # its time again, and it says what was held back
        loop.run_until_complete(asyncio.sleep(0))
        assert shown[-1] == (
            "disk almost full\n(2 more warnings held back: printed when phasef exits)",
            "warning",
            "warning",
        )
    finally:
        loop.close()
    assert handler.kept == [
        "WARNING phasef.test: disk almost full",
        "WARNING phasef.test: disk almost full",
        "WARNING phasef.test: fell back to polling",
        "ERROR phasef.test: cannot write the cache",
        "WARNING phasef.test: a fourth within the burst",
        "WARNING phasef.test: a fifth within the burst",
        "WARNING phasef.test: disk almost full",
    ]
    out = io.StringIO()
    print_kept(handler, out)
    assert out.getvalue().splitlines() == handler.kept


def test_the_toasts_come_on_the_loop_from_any_thread_keep_a_bounded_number_and_outlive_the_loop() -> None:
    loop = asyncio.new_event_loop()
    on_thread: list[int] = []
    handler = ToastHandler().bind(lambda *args: on_thread.append(threading.get_ident()), loop)
    worker = threading.Thread(target=handler.emit, args=(_record("from a worker"),))
    worker.start()
    worker.join()
    loop.run_until_complete(asyncio.sleep(0))
    assert on_thread == [threading.get_ident()]  # (the loop's thread: this one)
    for n in range(KEPT + 5):
        handler.emit(_record(f"warning {n}"))
    loop.close()
    handler.emit(_record("after the app"))  # the loop is closed: kept, not shown, no error
    assert len(handler.kept) == KEPT and handler.dropped == 7
    out = io.StringIO()
    print_kept(handler, out)
    assert out.getvalue().splitlines()[-1] == "… 7 more warnings"
    print_kept(None, out)  # (an app that never mounted)


def test_the_cli_s_handler_writes_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in a new process (pytest's own taken away)
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)
    configure_logging(0, False)
    assert [type(h) for h in logging.getLogger().handlers] == [CurrentStderr]
    first, second = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(first):
        logging.getLogger("phasef.test").warning("one")
        logging.getLogger("phasef.test").info("not at this level")
    with contextlib.redirect_stderr(second):  # (a TUI's capture, say)
        logging.getLogger("phasef.test").warning("two")
    assert first.getvalue() == "WARNING phasef.test: one\n"
    assert second.getvalue() == "WARNING phasef.test: two\n"


def test_one_handler_serves_every_app_of_a_process_and_shows_nothing_unbound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first app puts the handler on the root logger; later ones (an SSH session forked after the warm-up's app)
    only point it at themselves: no new handler, each app's warnings kept afresh."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(log_toasts, "shared", None)
    loop = asyncio.new_event_loop()
    shown: list[str] = []
    try:
        first = show_warnings(lambda text, *_: shown.append(f"first: {text}"), loop)
        logging.getLogger("phasef.test").warning("one")
        first.unbind()
        logging.getLogger("phasef.test").warning("between the apps")  # nobody's: not shown, not kept
        assert first.kept == ["WARNING phasef.test: one"]
        second = show_warnings(lambda text, *_: shown.append(f"second: {text}"), loop)
        logging.getLogger("phasef.test").warning("two")
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert second is first and logging.getLogger().handlers == [first]
    assert shown == ["first: one", "second: two"] and second.kept == ["WARNING phasef.test: two"]
    logging.getLogger().handlers = []  # taken off by someone else: the next app puts a handler on again
    assert show_warnings(lambda *_: None, loop) in logging.getLogger().handlers
