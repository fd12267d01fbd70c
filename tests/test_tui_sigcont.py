"""A TUI stopped and continued from outside (``kill -STOP`` / ``kill -CONT``, a CPU limiter) starts no second pair of
terminal threads, and puts its terminal back when it was changed while it stood; a TUI whose terminal goes away
ends, even where no ``SIGHUP`` reaches it (``phasef_tui.driver``)."""

from __future__ import annotations

import os
import select
import signal
import termios
import threading
import time
from pathlib import Path

from phasef_tui.driver import hangup_reaches
from tests.tmux_helpers import wait_until
from tests.tui_helpers import sample_records, start_in_pty, write_trace


class Pty:
    """The viewer in a pty, its output drained by a thread (a full pty would stop it)."""

    def __init__(self, trace: Path, cwd: Path, prelude: str = "") -> None:
        run = "import runpy, sys; sys.argv[0] = 'phasef'; runpy.run_module('phasef_tui.cli', run_name='__main__')"
        self.proc, self.master = start_in_pty(
            ["-c", f"{prelude}\n{run}", "trace", "view", str(trace)], cwd, {"PHASEF_STARTUP_CACHE": "0"}
        )
        self.output = bytearray()
        self.lock = threading.Lock()
        self.draining_stopped = threading.Event()
        """Set before the master end is closed: a read in progress would keep the terminal open."""
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while not self.draining_stopped.is_set():
            try:
                if not select.select([self.master], [], [], 0.05)[0]:
                    continue
                data = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.output += data

    def seen(self, text: bytes) -> bool:
        with self.lock:
            return text in self.output

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def state(self) -> str:
        return Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)
        wait_until(lambda: self.state() == "T", timeout=10, what="the viewer stopped")

    def cont(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        wait_until(lambda: self.state() != "T", timeout=10, what="the viewer continued")

    def steady_threads(self) -> int:
        """The thread count once it has not changed for half a second (the summary's thread ends on its own)."""
        last, since = self.threads(), time.monotonic()
        deadline = since + 20
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.threads()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= 0.5:
                return now
        raise AssertionError(f"the viewer's thread count did not settle (last {last})")

    def slave_path(self) -> str:
        return os.readlink(f"/proc/{self.proc.pid}/fd/0")

    def quit(self) -> int:
        os.write(self.master, b"q")
        return self.proc.wait(timeout=20)

    def hang_up(self) -> None:
        """The terminal goes away (its master end closed, as when a terminal window or an SSH connection closes)."""
        self.draining_stopped.set()
        self.reader.join(timeout=10)
        os.close(self.master)
        self.master = -1

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        if self.master >= 0:
            self.draining_stopped.set()
            self.reader.join(timeout=10)
            os.close(self.master)


def _started(tmp_path: Path, prelude: str = "") -> Pty:
    trace = write_trace(tmp_path / "trace.jsonl", sample_records())
    pty = Pty(trace, tmp_path, prelude)
    try:
        wait_until(lambda: pty.seen(b"episode"), timeout=60, what="the first screen")
    except BaseException:
        pty.close()  # (a viewer left running would outlive the test)
        raise
    return pty


def test_stopped_and_continued_from_outside_the_viewer_keeps_its_threads_and_keys(tmp_path: Path) -> None:
    pty = _started(tmp_path)
    try:
        before = pty.steady_threads()
        for _ in range(5):
            pty.stop()
            pty.cont()
            time.sleep(0.1)
        # Textual's own driver started a new input and output thread at each continue: 10 more here
        assert pty.steady_threads() == before
        assert pty.quit() == 0  # the keys still reach the app
    finally:
        pty.close()


def test_a_terminal_changed_while_stopped_is_put_back_with_one_pair_of_threads(tmp_path: Path) -> None:
    pty = _started(tmp_path)
    try:
        before = pty.steady_threads()
        fd = os.open(pty.slave_path(), os.O_RDWR | os.O_NOCTTY)
        try:
            raw = termios.tcgetattr(fd)
            assert not raw[3] & termios.ICANON  # the app's raw mode
            pty.stop()
            sane = list(raw)
            sane[3] |= termios.ICANON | termios.ECHO  # what `stty sane` or a shell taking the terminal back does
            termios.tcsetattr(fd, termios.TCSANOW, sane)
            with pty.lock:
                pty.output.clear()
            pty.cont()
            wait_until(lambda: not termios.tcgetattr(fd)[3] & termios.ICANON, timeout=10, what="raw mode back")
        finally:
            os.close(fd)
        wait_until(lambda: pty.seen(b"episode"), timeout=20, what="the screen drawn again")
        assert pty.steady_threads() == before
        assert pty.quit() == 0
    finally:
        pty.close()


def test_a_viewer_whose_terminal_goes_away_ends_as_a_hang_up_would_end_it(tmp_path: Path) -> None:
    # started in a session of its own on the pty, not as its controlling terminal: the kernel sends no SIGHUP
    pty = _started(tmp_path)
    try:
        pty.hang_up()
        assert pty.proc.wait(timeout=20) == -signal.SIGHUP  # (Textual's input thread alone read EOF for ever)
    finally:
        pty.close()


def test_a_viewer_that_ignores_hang_ups_still_ends_when_its_terminal_goes_away(tmp_path: Path) -> None:
    pty = _started(tmp_path, prelude="import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN)")  # as nohup
    try:
        pty.hang_up()
        pty.proc.wait(timeout=20)
    finally:
        pty.close()


def test_a_viewer_on_its_controlling_terminal_is_ended_by_the_kernels_hang_up(tmp_path: Path) -> None:
    # the pty made the session's controlling terminal, as a terminal or sshd makes it: no thread waits for the
    # hang-up (``hangup_reaches``), the kernel's SIGHUP ends the viewer
    prelude = "import fcntl, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0)"
    pty = _started(tmp_path, prelude=prelude)
    try:
        pty.hang_up()
        assert pty.proc.wait(timeout=20) == -signal.SIGHUP
    finally:
        pty.close()


def test_hangup_reaches_only_a_controlling_terminal_and_not_under_nohup() -> None:
    master, slave = os.openpty()  # (not this process's controlling terminal)
    try:
        assert not hangup_reaches(slave)
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            assert not hangup_reaches(slave)
        finally:
            signal.signal(signal.SIGHUP, previous)
    finally:
        os.close(slave)
        os.close(master)
