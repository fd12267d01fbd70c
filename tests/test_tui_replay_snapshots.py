"""Snapshots of ``phasef replay`` (the timeline bar under every screen) at 80x24 and 120x36, on a journal written
here with fixed times, so the picture does not depend on a clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from phasef_tui.app import PhasefApp
from phasef_tui.replay_source import ReplaySource
from tests.tui_helpers import FIXED_NOW

SMALL, LARGE = (80, 24), (120, 36)
PLAN = [
    {"stage": "A", "step": "fetch", "kind": "shell", "title": "fetch the inputs"},
    {"stage": "A", "step": "train", "kind": "shell", "title": None},
    {"stage": "B", "step": "release", "kind": "gate", "title": "release the model"},
]


def _event(seq: int, second: int, type_: str, key: str | None = None, attempt: int | None = None, **payload: Any):  # type: ignore[no-untyped-def]
    stage, step = key.split(".") if key else (None, None)
    ts = f"2026-11-30T10:{second // 60:02d}:{second % 60:02d}.000Z"
    return {"seq": seq, "ts": ts, "type": type_, "stage": stage, "step": step, "attempt": attempt, "payload": payload}


def write_session(root: Path) -> Path:
    session = root / "sessions" / "20261130-100000-beef"
    (session / "logs").mkdir(parents=True)
    (session / "logs" / "A.fetch.1.log").write_text("fetching\nconnection reset\n")
    (session / "logs" / "A.fetch.2.log").write_text("fetching\ndone\n")
    train_log = ["starting"] + [f'@@phasef-event {{"event": "train", "step": {i}}}' for i in range(1, 5)] + ["saved"]
    (session / "logs" / "A.train.1.log").write_text("\n".join(train_log) + "\n")
    events = [
        _event(1, 0, "session_started", pid=1, final_gate="B.release", plan=PLAN),
        _event(2, 1, "step_started", "A.fetch", 1, pid=11, log="logs/A.fetch.1.log"),
        _event(3, 4, "step_failed", "A.fetch", 1, error="exit status 1: connection reset", retry_at="x"),
        _event(4, 6, "step_started", "A.fetch", 2, pid=12, log="logs/A.fetch.2.log"),
        _event(5, 9, "step_succeeded", "A.fetch", 2, duration_s=3.0, outputs={}, summary={"rows": 1200}),
        _event(6, 10, "step_started", "A.train", 1, pid=13, log="logs/A.train.1.log"),
    ]
    seq = 7
    for i in range(1, 5):
        events.append(
            _event(
                seq,
                10 + 5 * i,
                "step_progress",
                "A.train",
                1,
                event="train",
                step=i,
                total_steps=4,
                train_loss=2.0 / i,
                _attempt=1,
                _line=i + 1,
            )
        )
        seq += 1
    events += [
        _event(seq, 40, "step_succeeded", "A.train", 1, duration_s=30.0, outputs={}, summary={"final_train_loss": 0.5}),
        _event(seq + 1, 41, "gate_opened", "B.release", 1, prompt="Release?", evidence={}, evidence_sha256="0" * 64),
        _event(seq + 2, 100, "gate_decided", "B.release", None, decision="go", operator="alice", reason="fine"),
        _event(seq + 3, 101, "run_finished", None, None, state="completed", exit_code=0, final_decision="GO"),
    ]
    (session / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return session


def replay_app(tmp_path: Path, **kw: Any) -> PhasefApp:
    source = ReplaySource(write_session(tmp_path), operator="alice", **kw)
    return PhasefApp(source, blink=False, clock=lambda: FIXED_NOW)


def with_changed_evidence(session: Path) -> Path:
    """The gate's evidence recorded with one hash; the file there now has another."""
    (session / "out").mkdir()
    (session / "out" / "report.json").write_text('{"verdict": "FAIL"}\n')
    journal = session / "journal.jsonl"
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    for ev in events:
        if ev["type"] == "gate_opened":
            ev["payload"]["evidence"] = {"out/report.json": "1" * 64}
    journal.write_text("".join(json.dumps(e) + "\n" for e in events))
    return session


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause(0.3)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.2)


def test_replay_at_a_failure_small(snap_compare: Any, tmp_path: Path) -> None:
    # any -> failure, then the next failure: A.fetch's first attempt failed (it is retried later)
    assert snap_compare(replay_app(tmp_path), press=["m", "greater_than_sign"], terminal_size=SMALL, run_before=settle)


def test_replay_mid_training_large(snap_compare: Any, tmp_path: Path) -> None:
    # any -> failure -> gate: the gate opening, then three events back: training at its third step
    press = ["m", "m", "greater_than_sign", "comma", "comma", "comma"]
    assert snap_compare(replay_app(tmp_path), press=press, terminal_size=LARGE, run_before=settle)


def test_replay_at_the_gate_small(snap_compare: Any, tmp_path: Path) -> None:
    press = ["m", "m", "greater_than_sign"]
    assert snap_compare(replay_app(tmp_path), press=press, terminal_size=SMALL, run_before=settle)


async def settle_hashed(pilot: Pilot[Any]) -> None:
    """As ``settle``, and until the background hash check has answered for the position shown."""
    await settle(pilot)
    source = pilot.app.source
    assert isinstance(source, ReplaySource)
    for _ in range(100):
        if source.changed_files():
            break
        await pilot.pause(0.05)
    await pilot.pause(0.3)


def test_replay_changed_evidence_large(snap_compare: Any, tmp_path: Path) -> None:
    """At the gate, on the Audit screen: the evidence file changed since it was recorded is marked, in the bar too."""
    source = ReplaySource(with_changed_evidence(write_session(tmp_path)), operator="alice")
    app = PhasefApp(source, blink=False, clock=lambda: FIXED_NOW)
    press = ["m", "m", "greater_than_sign", "4"]
    assert snap_compare(app, press=press, terminal_size=LARGE, run_before=settle_hashed)


def test_attach_live_small(snap_compare: Any, tmp_path: Path) -> None:
    """``phasef attach``: the live view has no timeline bar (the replay keys bring it)."""
    app = replay_app(tmp_path, follow=True, attached=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=settle)


def test_attach_paused_small(snap_compare: Any, tmp_path: Path) -> None:
    """``phasef attach`` after one event back: paused, the timeline bar shown."""
    app = replay_app(tmp_path, follow=True, attached=True)
    assert snap_compare(app, press=["comma"], terminal_size=SMALL, run_before=settle)


def test_attach_paused_at_a_failure_large(snap_compare: Any, tmp_path: Path) -> None:
    app = replay_app(tmp_path, follow=True, attached=True)
    press = ["comma", "m", "less_than_sign"]  # paused; kind failure; the previous one
    assert snap_compare(app, press=press, terminal_size=LARGE, run_before=settle)
