"""The last lines of step logs as the dashboard shows them: the step's own log, and the logs of its other ranks or
shards beside it (``<log>.rank<r>.log``, as ``pipeline.jobs.ranks`` names them), read from the end and cached by
size."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from pipeline.fsio import open_regular

LOG_TAIL_BYTES = 32 << 10
LOG_TAIL_LINES = 200
LOG_CACHE_FILES = 64
EVENT_PREFIX = "@@phasef-event "

Tails = list[tuple[str | None, tuple[str, ...]]]


class LogTails:
    def __init__(self) -> None:
        self._cache: dict[Path, tuple[int, tuple[str, ...]]] = {}  # path -> (size, the lines kept)

    def tail(self, path: Path) -> tuple[str, ...]:
        """The last lines of ``path`` (progress-event lines left out; they are in the journal)."""
        try:
            size = path.stat().st_size
        except OSError:
            return ()
        cached = self._cache.get(path)
        if cached is not None and cached[0] == size:
            return cached[1]
        try:
            fh = open_regular(path)
        except OSError:
            return ()
        with fh:
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            data = fh.read(LOG_TAIL_BYTES)
        lines = data.decode("utf-8", "replace").splitlines()
        if size > LOG_TAIL_BYTES and lines:
            lines = lines[1:]  # the first one is cut
        kept = tuple(ln for ln in lines if not ln.startswith(EVENT_PREFIX))[-LOG_TAIL_LINES:]
        if len(self._cache) >= LOG_CACHE_FILES:
            self._cache.clear()
        self._cache[path] = (size, kept)
        return kept

    def with_ranks(self, path: Path, label: str) -> Tails:
        """``path``'s tail, then each other rank's or shard's: labelled ``"<label> <r>"`` when there are others,
        a single unlabelled tail when there are none."""
        stem = path.name.removesuffix(".log")
        others = sorted(
            (int(m.group(1)), p)
            for p in path.parent.glob(f"{glob.escape(stem)}.rank*.log")
            if (m := re.fullmatch(re.escape(stem) + r"\.rank(\d+)\.log", p.name))
        )
        if not others:
            return [(None, self.tail(path))]
        tails: Tails = [(f"{label} 0", self.tail(path))]
        return tails + [(f"{label} {r}", self.tail(p)) for r, p in others]
