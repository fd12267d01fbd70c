"""A view read ahead (``attach_ahead``): the SSH session server reads the served session once, and each session goes
on from there. What a session then shows must be what reading the folder itself would show; when the files changed
in a way the view cannot follow, the session reads the folder itself."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from phasef_tui import attach_ahead
from phasef_tui.app import load_tui_settings
from phasef_tui.replay_source import ReplaySource
from phasef_tui.session_source import FINGERPRINT_ENV, ROLE_ENV, session_config_path
from pipeline.config import parse_config
from pipeline.engine import Engine
from tests.spine_helpers import ONE_GATE_PLAN

TUI = """
[tui]
theme = "textual-light"

[tui.keys]
"traces.follow" = "F"
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of the one-gate plan, its gate signed: the journal to cut and grow again."""
    root = tmp_path_factory.mktemp("ahead")
    session_dir = root / "sessions" / "s1"

    async def run() -> None:
        engine = Engine(parse_config(ONE_GATE_PLAN + TUI), session_dir=session_dir, project_dir=root)

        async def sign() -> None:
            while "B.release" not in engine.state.gates or engine.state.gates["B.release"].state != "waiting":
                await asyncio.sleep(0.05)
            engine.decide("B.release", "go", "ann", "the evidence is there", override=True)

        signer = asyncio.create_task(sign())
        try:
            await engine.run()
        finally:
            engine.journal.close()
            signer.cancel()

    asyncio.run(run())
    return session_dir


@pytest.fixture(autouse=True)
def _nothing_kept() -> None:
    attach_ahead._ahead = None


def _cut(recorded: Path, folder: Path) -> bytes:
    """``folder``: a copy of the session whose journal stops in the middle of a line past its first half; returns
    the rest of the journal."""
    shutil.copytree(recorded, folder)
    whole = (recorded / "journal.jsonl").read_bytes()
    cut = whole.index(b"\n", len(whole) // 2) + 7  # (a torn line: the view keeps its start for the next read)
    (folder / "journal.jsonl").write_bytes(whole[:cut])
    return whole[cut:]


def _append(folder: Path, data: bytes) -> None:
    with open(folder / "journal.jsonl", "ab") as fh:
        fh.write(data)


def test_a_view_read_ahead_goes_on_from_where_it_stopped(
    recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "s1"
    rest = _cut(recorded, folder)
    monkeypatch.delenv(FINGERPRINT_ENV, raising=False)
    monkeypatch.delenv(ROLE_ENV, raising=False)
    assert attach_ahead.prepare(folder) and attach_ahead.pending() == folder.resolve()
    early = attach_ahead._ahead
    assert early is not None and early.source.state.gates["B.release"].state == "waiting"

    _append(folder, rest)  # the run went on after the server read it: the gate signed, the run finished
    monkeypatch.setenv(FINGERPRINT_ENV, "SHA256:bob-key")  # (a forked session's environment: its key and role)
    monkeypatch.setenv(ROLE_ENV, "approver")
    taken = attach_ahead.take(folder, "bob", tmp_path / "control.sock")
    assert taken is not None and attach_ahead.pending() is None
    source, settings = taken
    source.read_journal()  # what the app's first frame does
    fresh = ReplaySource(folder, operator="bob", control_socket=tmp_path / "control.sock", follow=True, attached=True)
    try:
        assert source.state.model_dump() == fresh.state.model_dump()
        assert source.state.gates["B.release"].decision == "go" and source.state.finished
        assert (source.operator, source.control_socket, source.title) == (
            fresh.operator,
            fresh.control_socket,
            fresh.title,
        )
        assert source.title == "session s1 · bob (approver)"
        assert (source.key_fingerprint, source.role) == ("SHA256:bob-key", "approver")
        expected = load_tui_settings(session_config_path(folder))
        assert settings["keymap"] == expected["keymap"] == {"traces.follow": "F"}
        assert settings["theme"] == expected["theme"] == "textual-light"
        assert settings["keymap_problems"] == expected["keymap_problems"] == []
        assert attach_ahead.take(folder, "carol", None) is None  # taken once
    finally:
        source.stop()
        fresh.stop()


def _config_edited(folder: Path) -> None:
    config = session_config_path(folder)
    assert config is not None
    config.write_text(config.read_text().replace('"textual-light"', '"textual-dark"'))


def _journal_replaced(folder: Path) -> None:
    journal = folder / "journal.jsonl"
    (folder / "new.jsonl").write_bytes(journal.read_bytes())  # the same bytes, another file
    os.replace(folder / "new.jsonl", journal)


def _journal_cut(folder: Path) -> None:
    journal = folder / "journal.jsonl"
    with open(journal, "r+b") as fh:
        fh.truncate(journal.stat().st_size // 3)


def _journal_gone(folder: Path) -> None:
    (folder / "journal.jsonl").unlink()


def _journal_rewritten_in_place(folder: Path) -> None:
    """The same file (device, inode) and size, other bytes: as a journal deleted and written again under an inode
    number used again would be."""
    with open(folder / "journal.jsonl", "r+b") as fh:
        first = fh.read(40)
        fh.seek(0)
        fh.write(first.replace(b"{", b" ", 1))


def _config_rewritten_keeping_its_time(folder: Path) -> None:
    config = session_config_path(folder)
    assert config is not None
    stat = config.stat()
    text = config.read_text()
    config.write_text(text.replace('"textual-light"', '"textual-dusk!"'))  # (same size)
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert config.stat().st_size == stat.st_size and config.stat().st_mtime_ns == stat.st_mtime_ns


def _config_gone(folder: Path) -> None:
    config = session_config_path(folder)
    assert config is not None
    config.unlink()


@pytest.mark.parametrize(
    "change",
    [
        _config_edited,
        _config_rewritten_keeping_its_time,
        _config_gone,
        _journal_replaced,
        _journal_cut,
        _journal_gone,
        _journal_rewritten_in_place,
    ],
    ids=[
        "config edited",
        "config rewritten, same size and time",
        "config gone",
        "journal replaced",
        "journal cut",
        "journal gone",
        "journal rewritten in place",
    ],
)
def test_a_view_read_ahead_of_files_that_changed_is_not_used(
    recorded: Path, tmp_path: Path, change: Callable[[Path], None]
) -> None:
    folder = tmp_path / "s1"
    _cut(recorded, folder)
    assert attach_ahead.prepare(folder)
    change(folder)
    assert attach_ahead.take(folder, "bob", None) is None
    assert attach_ahead.pending() is None  # dropped, not kept for a later attach


def test_a_view_read_ahead_serves_only_its_own_folder(recorded: Path, tmp_path: Path) -> None:
    shutil.copytree(recorded, tmp_path / "a")
    shutil.copytree(recorded, tmp_path / "b")
    assert attach_ahead.prepare(tmp_path / "a")
    assert attach_ahead.take(tmp_path / "b", "bob", None) is None
    assert not attach_ahead.prepare(tmp_path / "nothing")  # no journal: nothing read, nothing kept
    assert attach_ahead.pending() is None
    # the same folder by another path (the server resolves it; so does attach)
    assert attach_ahead.prepare(tmp_path / "a")
    taken = attach_ahead.take(tmp_path / "b" / ".." / "a", "bob", None)
    assert taken is not None
    taken[0].stop()
