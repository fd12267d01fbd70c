"""The last lines of step logs as the dashboard shows them: the step's own log, and the logs of its other ranks or
shards beside it (``<log>.rank<r>.log``, as ``pipeline.jobs.ranks`` names them), read from the end and cached by
size."""

from __future__ import annotations

import glob
import re
import time
from pathlib import Path

from pipeline.fsio import open_regular

LOG_TAIL_BYTES = 32 << 10
LOG_TAIL_LINES = 200
LOG_CACHE_FILES = 64
EVENT_PREFIX = "@@phasef-event "
RANKS_SETTLED_NS = 1_000_000_000

Tails = list[tuple[str | None, tuple[str, ...]]]


class LogTails:
    def __init__(self) -> None:
        self._cache: dict[Path, tuple[int, tuple[str, ...]]] = {}  # path -> (size, the lines kept)
        self._ranks: dict[Path, tuple[int, list[tuple[int, Path]]]] = {}
        """A log's other ranks' logs, with the modification time (ns) of their folder when they were listed."""

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

    def _other_ranks(self, path: Path) -> list[tuple[int, Path]]:
        """The other ranks' logs of ``path`` (rank, path), listed again only when their folder changed: the
        dashboard asks every time it redraws (each second while a step runs). A listing made within a second of
        the folder's last change is not kept (a file made in the same clock tick leaves its time as it was)."""
        try:
            changed = path.parent.stat().st_mtime_ns
        except OSError:
            return []
        kept = self._ranks.get(path)
        if kept is not None and kept[0] == changed:
            return kept[1]
        stem = path.name.removesuffix(".log")
        others = sorted(
            (int(m.group(1)), p)
            for p in path.parent.glob(f"{glob.escape(stem)}.rank*.log")
            if (m := re.fullmatch(re.escape(stem) + r"\.rank(\d+)\.log", p.name))
        )
        if time.time_ns() - changed > RANKS_SETTLED_NS:
            if len(self._ranks) >= LOG_CACHE_FILES:
                self._ranks.clear()
            self._ranks[path] = (changed, others)
        return others

    def with_ranks(self, path: Path, label: str) -> Tails:
        """``path``'s tail, then each other rank's or shard's: labelled ``"<label> <r>"`` when there are others,
        a single unlabelled tail when there are none."""
        others = self._other_ranks(path)
        if not others:
            return [(None, self.tail(path))]
        tails: Tails = [(f"{label} 0", self.tail(path))]
        return tails + [(f"{label} {r}", self.tail(p)) for r, p in others]
