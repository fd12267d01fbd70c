"""Paths in reports, relative to the session folder, so a session folder can be moved or shared as it is.

A report names the files it was made from (an eval report, a trace). Inside the session folder they are written
relative to it (``artifacts/A/eval/eval_report.json``); a file outside it (a project's fixture, say) keeps its
absolute path, since moving the session does not move it.
"""

from __future__ import annotations

import os
from pathlib import Path


def session_relative(path: str | Path, session_dir: Path | None) -> str:
    """``path`` relative to ``session_dir`` when it lies inside it (POSIX separators), else unchanged."""
    if session_dir is None:
        return str(path)
    p = Path(path)
    base = Path(os.path.abspath(session_dir))
    full = Path(os.path.abspath(p if p.is_absolute() else base / p))
    try:
        return full.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def relative_text(text: str, session_dir: Path | None) -> str:
    """A message with the session folder's absolute prefix removed from the paths it names."""
    if session_dir is None:
        return text
    prefix = os.path.abspath(session_dir).rstrip(os.sep) + os.sep
    return text.replace(prefix, "")
