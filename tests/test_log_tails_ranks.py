"""The dashboard's step log tails with their other ranks' logs (``phasef_tui.log_tails.LogTails``): the ranks are
listed again only when their folder changed, and a listing made just after a change is not kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from phasef_tui.log_tails import LogTails


def _age(folder: Path, seconds: float) -> None:
    """The folder's modification time put ``seconds`` in the past (as if nothing had changed in it since)."""
    past = time.time_ns() - int(seconds * 1e9)
    os.utime(folder, ns=(past, past))


def test_rank_logs_are_listed_again_only_when_their_folder_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    step = logs / "D.train.1.log"
    step.write_text("rank zero\n")
    (logs / "D.train.1.rank1.log").write_text("rank one\n")
    (logs / "D.train.1.rank10.log").write_text("rank ten\n")
    (logs / "D.other.1.rank2.log").write_text("another step's\n")
    _age(logs, 5)
    tails = LogTails()
    listed: list[Path] = []
    real_glob = Path.glob

    def counting_glob(self: Path, pattern: str) -> object:
        listed.append(self)
        return real_glob(self, pattern)

    monkeypatch.setattr(Path, "glob", counting_glob)
    first = tails.with_ranks(step, "rank")
    assert first == [("rank 0", ("rank zero",)), ("rank 1", ("rank one",)), ("rank 10", ("rank ten",))]
    assert tails.with_ranks(step, "rank") == first
    assert len(listed) == 1, "the folder did not change: the listing kept"
    (logs / "D.train.1.rank2.log").write_text("rank two\n")  # the folder changes now
    fresh = tails.with_ranks(step, "rank")
    assert [label for label, _ in fresh] == ["rank 0", "rank 1", "rank 2", "rank 10"]
    assert len(listed) == 2
    tails.with_ranks(step, "rank")
    assert len(listed) == 3, "listed within a second of the change: not kept"
    _age(logs, 5)
    tails.with_ranks(step, "rank")
    tails.with_ranks(step, "rank")
    assert len(listed) == 4


def test_a_log_without_other_ranks_and_a_missing_folder(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    step = logs / "A.make.1.log"
    step.write_text("one\ntwo\n")
    _age(logs, 5)
    tails = LogTails()
    assert tails.with_ranks(step, "shard") == [(None, ("one", "two"))]
    assert tails.with_ranks(tmp_path / "gone" / "A.make.1.log", "rank") == [(None, ())]
