"""``python -m phasef_tui.ssh.attach SESSION_DIR OPERATOR``: what an SSH session runs (``hub.attach_command``). The
real sessions over OpenSSH are in test_ssh_prefork.py and test_ssh_server.py; here, what it refuses."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from phasef_tui.ssh.authorized_keys import Operator
from phasef_tui.ssh.hub import attach_command
from phasef_tui.ssh.zygote import ENTRY_POINTS, TUI_PRELOAD


def run_entry(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "phasef_tui.ssh.attach", *args]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_a_wrong_command_line_or_a_folder_without_a_journal_is_refused_with_exit_2(tmp_path: Path) -> None:
    for args in ((), (str(tmp_path),), (str(tmp_path), "ann", "extra"), (str(tmp_path), "")):
        result = run_entry(*args, cwd=tmp_path)
        assert result.returncode == 2 and "usage: python -m phasef_tui.ssh.attach SESSION_DIR OPERATOR" in result.stderr
    result = run_entry(str(tmp_path / "gone"), "ann", cwd=tmp_path)
    assert result.returncode == 2 and f"error: no session at {tmp_path / 'gone'} (no journal there)" in result.stderr
    assert result.stdout == ""


def test_the_ssh_server_runs_it_and_the_session_server_has_it_imported_and_called_directly() -> None:
    argv = attach_command(Operator("Ann Lee", "approver", "SHA256:x", "key 1"), Path("/srv/sessions/x"))
    assert argv == [sys.executable, "-m", "phasef_tui.ssh.attach", "/srv/sessions/x", "Ann Lee"]
    assert "phasef_tui.ssh.attach" in TUI_PRELOAD and ENTRY_POINTS["phasef_tui.ssh.attach"] == "main"


def test_a_warning_logged_while_the_tui_runs_goes_where_stderr_is_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No handler holds the terminal: while the TUI runs (Textual has ``sys.stderr`` captured) a warning goes to the
    capture, not over the screen."""
    from phasef_tui.commands import run
    from phasef_tui.ssh import attach

    (tmp_path / "journal.jsonl").write_text("", encoding="utf-8")
    captured = io.StringIO()
    seen: list[tuple[Path, str]] = []

    def tui(session_dir: Path, operator: str) -> int:
        seen.append((session_dir, operator))
        with contextlib.redirect_stderr(captured):  # as Textual does while the app runs
            logging.getLogger("phasef.test").warning("the follower fell back to polling")
            logging.getLogger("phasef.test").info("not shown")
        return 0

    monkeypatch.setattr(run, "attach", tui)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in a new process (pytest's own taken away)
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)
    handlers: list[logging.Handler] = []
    assert attach.main([str(tmp_path), "Ann Lee"]) == 0
    assert seen == [(tmp_path.resolve(), "Ann Lee")]
    assert captured.getvalue() == "the follower fell back to polling\n"
    assert "fell back" not in capsys.readouterr().err
    assert logging.getLogger().handlers == handlers
