"""An attached view read ahead: the journal replayed up to now and the ``[tui]`` settings, kept for the next attach.

The SSH session server (``ssh/warmup.py``) reads the session it serves once, before its first fork, as
``phasef attach`` reads it at start (``prepare``). A session forked from it then takes that view (``take``) and goes
on from where the server stopped reading: it applies only the events written since, and parses no config. A session
that reads the journal from its start and parses ``config.toml`` twice (the plan's titles, ``[tui]``) touches
objects all over the server's pages, and CPython writes their reference counts: each page written is copied into
the session. Measured with 20 sessions (``bench_ssh_sessions.py``'s memory figure): ~0.5 MB less PSS per session.

A view read ahead is used only while the files are the ones it read:

- the session folder is the one asked for;
- the journal is the same file (device and inode), not shorter than what was read, and holds the same bytes at its
  start and just before where the reading stopped (a journal replaced, cut, or deleted and written again under an
  inode number used again is read from its start, as it would be without this);
- the config holds the same bytes (or is still absent).

Otherwise the session reads the folder itself, as before. A view is taken once: it becomes that view's state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.fsio import read_bytes_bounded
from pipeline.journal import JOURNAL_NAME

if TYPE_CHECKING:
    from phasef_tui.replay_source import ReplaySource

READER = "phasef (read ahead)"
"""The operator a view read ahead is built for, until ``take`` gives it its own."""
MARK_BYTES = 256
"""Bytes of the journal compared at its start and just before where the reading stopped."""
CONFIG_LIMIT = 1 << 20
"""A config bigger than this is not read ahead (compared byte for byte at each take)."""


@dataclass
class _Ahead:
    session_dir: Path
    source: ReplaySource
    settings: dict[str, Any]
    journal: tuple[int, int]
    marks: tuple[bytes, bytes]
    config: tuple[Path | None, bytes | None]


_ahead: _Ahead | None = None


def _journal_file(path: Path) -> tuple[int, int, int] | None:
    """The journal's device, inode and size (None: gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size


def _config(session_dir: Path) -> tuple[Path | None, bytes | None]:
    """The session's config and its bytes (None: none, or one that cannot be read or is too big to compare)."""
    from phasef_tui.session_source import session_config_path

    path = session_config_path(session_dir)
    if path is None:
        return None, None
    try:
        return path, read_bytes_bounded(path, CONFIG_LIMIT)
    except OSError:  # (not a regular file, too big, unreadable: ``FileTooLarge`` and ``NotARegularFile`` too)
        return path, None


def _marks(journal: Path, upto: int) -> tuple[bytes, bytes] | None:
    """The journal's first bytes and those just before ``upto``."""
    try:
        with open(journal, "rb") as fh:
            head = fh.read(min(MARK_BYTES, upto))
            fh.seek(max(0, upto - MARK_BYTES))
            return head, fh.read(min(upto, MARK_BYTES))
    except OSError:
        return None


def prepare(session_dir: Path) -> bool:
    """Read ``session_dir`` as an attached view does at start and keep it for ``take``; False if there is no
    journal to read, or a config that cannot be compared (nothing is kept)."""
    global _ahead
    from phasef_tui.app import load_tui_settings
    from phasef_tui.replay_source import ReplaySource

    _ahead = None
    folder = Path(session_dir).resolve()
    config = _config(folder)  # (before it is parsed: a change while it is read shows as other bytes at the take)
    journal = _journal_file(folder / JOURNAL_NAME)
    if journal is None or (config[0] is not None and config[1] is None):
        return False
    source = ReplaySource(folder, operator=READER, control_socket=None, follow=True, attached=True)
    marks = _marks(folder / JOURNAL_NAME, source.journal_read)
    if marks is None:
        return False
    _ahead = _Ahead(folder, source, load_tui_settings(config[0]), journal[:2], marks, config)
    return True


def take(session_dir: Path, operator: str, control_socket: Path | None) -> tuple[ReplaySource, dict[str, Any]] | None:
    """The view read ahead of ``session_dir`` and its ``PhasefApp`` settings, now ``operator``'s; None if there is
    none or the files changed in a way it cannot follow. Either way nothing is kept: a view is taken once."""
    global _ahead
    ahead, _ahead = _ahead, None
    if ahead is None or ahead.session_dir != Path(session_dir).resolve():
        return None
    if _config(ahead.session_dir) != ahead.config:
        return None
    path = ahead.session_dir / JOURNAL_NAME
    journal = _journal_file(path)
    if journal is None or journal[:2] != ahead.journal or journal[2] < ahead.source.journal_read:
        return None
    if _marks(path, ahead.source.journal_read) != ahead.marks:
        return None
    ahead.source.identify(operator, control_socket)
    return ahead.source, ahead.settings


def pending() -> Path | None:
    """The session folder of the view read ahead, if one is kept."""
    return _ahead.session_dir if _ahead is not None else None
