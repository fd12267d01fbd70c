"""Where a session's files are, known without importing the engine: the journal's and the control socket's names,
the socket's path, and the session folders under a sessions root.

``phasef attach`` (and each SSH session) needs only these to open a session, so this module imports nothing of the
engine, its jobs or pydantic's config models: a TUI that attaches does not pay for them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

JOURNAL_NAME = "journal.jsonl"
SOCKET_NAME = "control.sock"
POINTER_NAME = "control.path"
"""Written beside the journal when the socket's path is too long for ``AF_UNIX`` and the socket lives elsewhere."""


def socket_path(session_dir: Path) -> Path:
    """Where the session's control socket is (or would be)."""
    pointer = session_dir / POINTER_NAME
    if pointer.exists():
        return Path(pointer.read_text(encoding="utf-8").strip())
    return session_dir / SOCKET_NAME


def is_session(folder: Path) -> bool:
    """A folder with a journal."""
    return (folder / JOURNAL_NAME).exists()


def list_sessions(root: Path) -> list[Path]:
    """Session folders under ``root``, newest (by journal modification time) first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if is_session(p)]
    return sorted(found, key=lambda p: (p / JOURNAL_NAME).stat().st_mtime, reverse=True)


def find_session(root: Path | Callable[[], Path], session: str | None) -> Path:
    """A session folder by id (or path), or the newest one; ``FileNotFoundError`` with a helpful message. ``root``
    may be a function giving the sessions root: it is called only when a folder given by its path is not a session
    (working the root out reads the config: a session given by its path needs none of that)."""
    if session:
        direct = Path(session)
        if is_session(direct):
            return direct
    if callable(root):
        root = root()
    if session:
        candidate = root / session
        if is_session(candidate):
            return candidate
        known = ", ".join(p.name for p in list_sessions(root)[:5]) or "none"
        raise FileNotFoundError(f"no session {session!r} under {root} (recent: {known})")
    sessions = list_sessions(root)
    if not sessions:
        raise FileNotFoundError(f"no sessions under {root}")
    return sessions[0]
