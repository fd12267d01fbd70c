"""The replay keys inside ``phasef attach`` on a running session: pause the live view, scrub back by event, to the
previous failure and to a gate, see the board as it was while the supervisor goes on, and ``F`` back to live.

A real supervisor (``phasef run --headless``) runs a plan whose first step fails until the operator restores its
input; the real ``phasef attach`` runs in a private tmux server and gets the real keys.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.spine_helpers import has_event, phasef, spawn, wait_for, write_plan
from tests.test_step_retry import RETRY_PLAN
from tests.tmux_helpers import Tmux

pytestmark = pytest.mark.skipif(__import__("shutil").which("tmux") is None, reason="tmux is not installed")

POSITION = re.compile(r"REPLAY\s+(\d+)/(\d+)")


def _position(screen: str) -> tuple[int, int] | None:
    found = POSITION.search(screen)
    return (int(found.group(1)), int(found.group(2))) if found else None


def _row(screen: str, step: str) -> str:
    """The board's line of ``step`` (its state icon is on it)."""
    return next((ln for ln in screen.splitlines() if re.search(rf"\b{re.escape(step)}\b", ln)), "")


def test_attach_pause_scrub_back_and_return_to_live(tmp_path: Path, tmux: Tmux) -> None:
    write_plan(tmp_path, RETRY_PLAN)
    proc = spawn("run", "--headless", "--session", "x", cwd=tmp_path)
    session = tmp_path / "sessions" / "x"
    try:
        wait_for(lambda: has_event(session, "step_blocked", "A.use"), 60, "the failed step to block the next")
        argv = [sys.executable, "-m", "phasef_tui.cli", "attach", "x", "--as", "ann"]
        tmux.start("a", argv, 120, 36, cwd=tmp_path)

        def screen() -> str:
            return tmux.screen("a")

        def keys(*names: str) -> None:
            tmux.send("a", *names, pause=0.3)

        # live: the newest state, no timeline bar
        wait_for(lambda: "1 gate waiting" in screen() and "■" in _row(screen(), "use"), 30, f"live:\n{screen()}")
        assert "REPLAY" not in screen() and "LIVE" not in screen()
        assert "session x · ann" in screen()  # the attach title, not a replay's

        keys("m")  # the landmark kind: a note (the bar is hidden while live), and the view stays live
        wait_for(lambda: "landmark kind: failure" in screen(), 15, f"the kind note:\n{screen()}")
        assert "REPLAY" not in screen()
        wait_for(lambda: "landmark kind" not in screen(), 15, "the note to go")  # (it covers the bar's end)

        keys(",")  # one event back: the live view pauses, the timeline bar appears
        wait_for(lambda: _position(screen()) is not None, 15, f"the pause:\n{screen()}")
        here, count = _position(screen())  # type: ignore[misc]
        assert here == count - 1
        keys(".")  # the newest event, still paused
        wait_for(lambda: _position(screen()) == (count, count), 15, f"one on:\n{screen()}")
        assert "step_blocked A.use" in screen() and "■" in _row(screen(), "use")

        keys("<")  # the previous failure: A.fetch failing, A.use not blocked yet
        wait_for(lambda: "step_failed A.fetch" in screen(), 15, f"the failure:\n{screen()}")
        assert "jump: failure" in screen() and "✗" in _row(screen(), "fetch") and "○" in _row(screen(), "use")

        keys("m", "<")  # kind: gate; back to the gate opening, before A.fetch had run
        wait_for(lambda: "gate_opened B.release" in screen(), 15, f"the gate:\n{screen()}")
        assert "jump: gate" in screen() and "1 gate waiting" in screen()
        assert "✗" not in _row(screen(), "fetch") and "○" in _row(screen(), "use")
        at_gate = _position(screen())
        assert at_gate is not None and at_gate[0] < count

        # the supervisor goes on meanwhile: the retried step succeeds, the paused view stays where it is
        (tmp_path / "ready").touch()
        r = phasef("retry", "x", "--step", "A.fetch", "--as", "ann", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: has_event(session, "step_succeeded", "A.use"), 60, "the retry to finish")
        wait_for(lambda: (_position(screen()) or (0, 0))[1] > at_gate[1], 15, f"new events counted:\n{screen()}")
        assert _position(screen())[0] == at_gate[0]  # type: ignore[index]
        assert "gate_opened B.release" in screen() and "✗" not in _row(screen(), "fetch")

        keys(".", ".")  # by event, on from the gate, and one back
        wait_for(lambda: (_position(screen()) or (0, 0))[0] == at_gate[0] + 2, 15, f"two on:\n{screen()}")
        keys(",")
        wait_for(lambda: (_position(screen()) or (0, 0))[0] == at_gate[0] + 1, 15, f"one back:\n{screen()}")

        keys("F")  # back to live: the bar goes, the board is the newest
        wait_for(lambda: "REPLAY" not in screen() and "✓" in _row(screen(), "use"), 15, f"back to live:\n{screen()}")
        assert "✓" in _row(screen(), "fetch") and "1 gate waiting" in screen()

        r = phasef(
            "approve", "x", "release", "--decision", "go", "--as", "ann", "--reason", "ok", "--override", cwd=tmp_path
        )
        assert r.returncode == 0, r.stderr
        (tmp_path / "fast").touch()
        phasef("cancel", "x", "--step", "A.long", "--as", "ann", cwd=tmp_path)
        proc.communicate(timeout=60)
        wait_for(lambda: "final GO-OVERRIDE" in screen(), 30, f"the decision, live:\n{screen()}")
        assert "REPLAY" not in screen()
        keys("q")
        assert tmux.wait_exit("a", 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
