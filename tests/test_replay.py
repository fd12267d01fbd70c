"""``phasef replay``: a real session (tiny MLX model served, the reference workload with its deaths, a failing step,
a signed gate) replayed from its first event; every landmark shows the session as it was then."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from phasef_tui.app import PhasefApp
from phasef_tui.data_source import ApprovalError
from phasef_tui.replay_source import ReplaySource
from pipeline.config import parse_config
from pipeline.engine import Engine
from pipeline.journal import read_journal
from pipeline.replay import Timeline
from tests.cross_helpers import tiny_eval_plan
from tests.spine_helpers import phasef
from tests.tmux_helpers import Tmux
from tests.tui_helpers import until
from widgets.timeline_bar import TimelineBar, render_timeline

PLAN = (
    tiny_eval_plan("replay", extra_params="emit_interval_s = 0.0, ")
    + """
[stages.B]
title = "Checks"

[stages.B.steps.broken]
kind = "shell"
command = "echo checking; exit 2"

[stages.C]
title = "Decision"
needs = ["A"]

[stages.C.steps.release]
kind = "gate"
evidence = ["artifacts/A/eval/eval_report.json"]
"""
)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("replay")
    session_dir = root / "sessions" / "r1"

    async def run() -> None:
        engine = Engine(parse_config(PLAN), session_dir=session_dir, project_dir=root)

        async def sign() -> None:
            while "C.release" not in engine.state.gates or engine.state.gates["C.release"].state != "waiting":
                await asyncio.sleep(0.1)
            engine.decide("C.release", "go", "ann", "numbers look right", override=True)  # no audit: an override

        signer = asyncio.create_task(sign())
        try:
            result = await engine.run()
        finally:
            engine.journal.close()
            signer.cancel()
        assert result.exit_code == 1  # B.broken failed

    asyncio.run(run())
    return session_dir


def _timeline(session: Path) -> Timeline:
    tl = Timeline(session.name, session)
    tl.extend(read_journal(session / "journal.jsonl"))
    return tl


def test_timeline_landmarks_and_states(session: Path) -> None:
    tl = _timeline(session)
    types = [e.type for e in tl.events]
    assert tl.marks["gate"] and types[tl.marks["gate"][0]] == "gate_opened"
    assert [types[i] for i in tl.marks["failure"]][:1] == ["step_failed"]
    assert len(tl.marks["stage"]) == 3 and tl.marks["death"]
    death = tl.events[tl.marks["death"][0]]
    assert death.type == "step_progress" and death.key == "A.eval"
    first = tl.state_at(0)
    assert first.state == "running" and all(s.state == "pending" for s in first.steps.values())
    at_gate = tl.state_at(tl.marks["gate"][0])
    assert at_gate.gates["C.release"].state == "waiting" and at_gate.final_decision is None
    last = tl.state_at(len(tl) - 1)
    assert last.gates["C.release"].decision == "go" and last.state == "failed"
    # checkpoints and the cursor cache give the same state as a replay from scratch
    for i in (len(tl) // 3, len(tl) - 1, 5, len(tl) // 2):
        fresh = _timeline(session).state_at(i)
        assert tl.state_at(i).model_dump() == fresh.model_dump()


async def test_replay_screens_follow_the_position(session: Path) -> None:
    source = ReplaySource(session, operator="ann")
    app = PhasefApp(source, blink=False)
    tl = source.timeline
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause(0.3)
        assert source.position == 0 and not source.following
        bar = app.screen.query_one("#timeline", TimelineBar)
        assert bar._info is not None and bar._info["position"] == 0
        view = source.session_view(0)
        assert view.state == "running" and all(s.state == "pending" for st in view.stages for s in st.steps)

        await pilot.press("greater_than_sign")  # the next landmark of any kind: A starts
        assert tl.events[source.position].type == "step_started" and tl.events[source.position].stage == "A"
        await pilot.press("m", "m")  # any -> failure -> gate
        assert source.mark_kind == "gate"
        await pilot.press("greater_than_sign")
        assert source.position == tl.marks["gate"][0]
        await pilot.pause(0.1)
        view = source.session_view(0)
        assert [g.id for g in view.pending_gates] == ["C.release"] and view.final_decision is None
        with pytest.raises(ApprovalError, match="in the past"):
            source.approve("C.release", "go", "x")

        await pilot.press("m", "m")  # gate -> stage -> death
        assert source.mark_kind == "death"
        await pilot.press("less_than_sign")
        assert source.position == max(i for i in tl.marks["death"] if i < tl.marks["gate"][0])
        eval_step = source.session_view(0).step("A.eval")
        assert eval_step is not None and eval_step.state == "running"
        shown = source.log_tail("A.eval")  # the log as it was then: the start line, not yet the verdict
        assert any(ln.startswith("evaluating ") for ln in shown) and not any(ln.startswith("PASS") for ln in shown)
        assert any(ln.startswith("PASS") for ln in (session / "logs" / "A.eval.1.log").read_text().splitlines())

        await pilot.press("m", "m")  # death -> any -> failure
        assert source.mark_kind == "failure"
        source.move_to(0)
        await pilot.press("greater_than_sign")
        failed = tl.events[source.position]
        assert failed.type == "step_failed" and failed.key == "B.broken"
        step = source.session_view(0).step("B.broken")
        assert step is not None and step.state == "failed"
        assert source.log_tail("B.broken") == ("checking",)

        before = source.position
        await pilot.press("comma")
        assert source.position == before - 1
        await pilot.press("full_stop", "full_stop")
        assert source.position == before + 1

        target = tl.events[tl.marks["gate"][0]].ts  # an ISO time: the last event at or before it
        await pilot.press("J")
        await pilot.pause(0.1)
        await pilot.press(*target, "enter")
        await pilot.pause(0.1)
        assert tl.events[source.position].ts == target and source.position >= tl.marks["gate"][0]
        hhmmss = target[11:19]
        source.jump_to_time(hhmmss)
        assert tl.events[source.position].ts[11:19] <= hhmmss
        assert source.position == len(tl) - 1 or tl.events[source.position + 1].ts[11:19] >= hhmmss
        with pytest.raises(ValueError, match="expected HH:MM"):
            source.jump_to_time("noon")

        await pilot.press("F")
        assert source.following and source.position == len(tl) - 1
        assert any(ln.startswith("PASS") for ln in source.log_tail("A.eval"))
        assert source.session_view(0).final_decision == "GO-OVERRIDE" and source.session_view(0).state == "failed"

        source.move_to(0)
        await pilot.press("Z", "Z")
        assert source.speed == 100
        await pilot.press("Z")  # back to 1x: the recorded pace
        assert source.speed == 1
        await pilot.press("z")
        assert source.playing
        start = time.monotonic()
        while source.position == 0 and time.monotonic() - start < 10:
            await pilot.pause(0.1)
        assert source.position > 0
        await pilot.press("z")
        assert not source.playing

        # a replay that plays keeps the full frame rate, even while its next event is far ahead (each event shows
        # at its recorded pace); stopped, it slows down or stops again
        source.move_to(0)
        source.speed = 0.001
        await pilot.press("z")
        await pilot.pause(1.0)  # (twice the quiet frames that slow an idle app down)
        assert source.playing and source.position == 0
        assert not (app.pace.slowed or app.pace.paused)
        await pilot.press("z")
        assert await until(pilot, lambda: app.pace.slowed or app.pace.paused)


def test_a_file_changed_since_is_marked(session: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "r1"
    shutil.copytree(session, copy)
    report = copy / "artifacts/A/eval/eval_report.json"
    data = json.loads(report.read_text())
    data["verdict"] = "FAIL"
    report.write_text(json.dumps(data))
    tl = _timeline(copy)
    changed = tl.changed_files(tl.state_at(len(tl) - 1))
    owners = {(c.owner, c.path) for c in changed}
    assert ("A.eval", "artifacts/A/eval/eval_report.json") in owners
    assert ("C.release", "artifacts/A/eval/eval_report.json") in owners  # the gate's evidence too
    assert tl.changed_files(tl.state_at(0)) == []  # nothing recorded yet at the first event
    info = {"position": 3, "count": len(tl), "following": False, "playing": False, "speed": 1.0, "kind": "any",
            "marks": tl.marks, "event": "#4", "changed": changed}  # fmt: skip
    assert "changed since recorded: eval_report.json" in render_timeline(info, 160).plain
    source = ReplaySource(copy, operator="ann")  # the TUI's bar gets the same list, hashed in the background
    source.live()
    deadline = time.monotonic() + 30
    while not source.changed_files() and time.monotonic() < deadline:
        time.sleep(0.05)
    # the report, and the step's artifacts folder that holds it
    assert {c.path for c in source.changed_files() or []} == {"artifacts/A/eval/eval_report.json", "artifacts/A/eval"}
    assert "changed since recorded" in render_timeline(source.timeline_info(), 200).plain


async def test_a_changed_evidence_file_is_marked_on_screen(session: Path, tmp_path: Path) -> None:
    """At the gate, in the running TUI: the timeline bar names the changed report, and the Audit screen marks that
    evidence row as changed since recorded (its recorded hash struck); with the original back, nothing is marked."""
    import io
    import shutil

    from rich.console import Console

    from widgets.verdict_card import EvidenceList

    copy = tmp_path / "r1"
    shutil.copytree(session, copy)
    report = copy / "artifacts/A/eval/eval_report.json"
    report.write_text(report.read_text().replace('"verdict": "PASS"', '"verdict": "FAIL"', 1))

    def text_of(widget: object, width: int = 160) -> str:
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(widget.content)  # type: ignore[attr-defined]
        return console.export_text()

    source = ReplaySource(copy, operator="ann")
    app = PhasefApp(source, blink=False)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("m", "m", "greater_than_sign", "4")  # kind gate; the gate opening; the Audit screen
        assert source.position == source.timeline.marks["gate"][0]
        bar = app.screen.query_one("#timeline", TimelineBar)

        def marked() -> bool:
            return bool(bar._info and bar._info.get("changed")) and "changed since" in text_of(
                app.screen.query_one(EvidenceList)
            )

        for _ in range(200):  # hashed in the background, then drawn
            await pilot.pause(0.05)
            if marked():
                break
        shown = text_of(app.screen.query_one(EvidenceList))
        row = next(ln for ln in shown.splitlines() if "eval_report.json" in ln)
        assert "⚠ changed since recorded" in row, shown
        assert "changed since recorded: eval_report.json" in render_timeline(bar._info or {}, 200).plain
        gate = next(g for g in source.session_view(0).gates if g.id == "C.release")
        assert [(e.path, e.changed) for e in gate.evidence] == [("artifacts/A/eval/eval_report.json", True)]

    # the same replay over the original files: nothing marked
    source = ReplaySource(session, operator="ann")
    app = PhasefApp(source, blink=False)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("m", "m", "greater_than_sign", "4")
        for _ in range(200):
            await pilot.pause(0.05)
            if source.changed_files() is not None:
                break
        await pilot.pause(0.3)
        assert source.changed_files() == []
        assert "changed since" not in text_of(app.screen.query_one(EvidenceList))
        gate = next(g for g in source.session_view(0).gates if g.id == "C.release")
        assert [e.changed for e in gate.evidence] == [False]


async def test_a_finished_session_in_the_past_lets_the_frames_rest(session: Path) -> None:
    """Paused in the past of a finished session nothing changes until a key: the frame timer stops (no CPU spent
    polling 20 times a second); a key wakes it and the move is drawn; playing keeps it running."""
    source = ReplaySource(session, operator="ann")
    app = PhasefApp(source, blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        assert source.finished and source.position == 0  # the journal ended; the view is at its first event
        for _ in range(200):
            await pilot.pause(0.05)
            if app.pace.paused:
                break
        assert app.pace.paused
        await pilot.press("greater_than_sign")
        await pilot.pause(0.2)
        bar = app.screen.query_one("#timeline", TimelineBar)
        assert source.position > 0 and bar._info is not None and bar._info["position"] == source.position
        await pilot.press("z")  # playing: the frames advance the position, so they do not rest
        assert source.playing and not source.settled()
        await pilot.press("z")


def test_attach_reads_the_timeline_only_at_the_first_replay_key(session: Path) -> None:
    """``phasef attach``: live, the journal is applied as a plain attach does (no events kept); the first replay key
    reads it as a timeline, and the states are the same either way."""
    from phasef_tui.session_source import SessionSource

    plain = SessionSource(session, operator="ann")
    live = ReplaySource(session, operator="ann", follow=True, attached=True)
    try:
        assert len(live.timeline) == 0 and live.following and live.title == plain.title
        assert live.state.model_dump() == plain.state.model_dump()
        assert live.timeline_info()["changed"] is None  # (nothing hashed while live in attach)
        live.live()  # already live: nothing read
        assert len(live.timeline) == 0
        live.step(-1)
        tl = live.timeline
        assert len(tl) == len(list(read_journal(session / "journal.jsonl"))) and tl.marks["death"]
        assert live.position == len(tl) - 2 and not live.following
        assert live.state.model_dump() == _timeline(session).state_at(len(tl) - 2).model_dump()
        live.live()
        assert live.following and live.position == len(tl) - 1
        assert live.state.model_dump() == plain.state.model_dump()
    finally:
        live.stop()
        plain.stop()


def test_replay_command_refuses_an_unknown_session(tmp_path: Path) -> None:
    r = phasef("replay", "nope", "--sessions", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "no session 'nope'" in r.stderr


def test_the_comparison_shows_only_once_it_was_written(tmp_path: Path) -> None:
    from tests.test_tui_replay_snapshots import write_session

    session = write_session(tmp_path)
    (session / "report").mkdir()
    delta = {"metric": "deaths", "label": "deaths", "unit": "", "better": "lower", "baseline": 4, "finetuned": 1}
    (session / "report" / "comparison.json").write_text(json.dumps({"deltas": [delta]}))
    source = ReplaySource(session, operator="ann")
    source.scan_traces()
    assert source.session_view(0).deltas == ()  # at the first event no step had compared anything
    source.live()
    assert [d.metric for d in source.session_view(0).deltas] == ["deaths"]


def test_the_trace_as_it_was(session: Path) -> None:
    """In the past the trace screens read only the records written by then; live, the whole trace."""
    source = ReplaySource(session, operator="ann")
    try:
        source.scan_traces()
        trace = session / "artifacts/A/eval/dirty_trace.jsonl"
        all_records = [json.loads(line) for line in trace.read_text().splitlines()]
        tl = source.timeline
        source.move_to(tl.marks["death"][0])
        now = tl.times[source.position]
        feed = source.feed
        assert feed is not None and feed.path != trace and "as of" in feed.display_name
        shown = [json.loads(line) for line in feed.path.read_text().splitlines()]
        assert 0 < len(shown) < len(all_records)
        assert shown == all_records[: len(shown)] and all(r["ts"] <= now for r in shown)
        assert all_records[len(shown)]["ts"] > now
        assert feed.wait_indexed(30) and len(feed.index) == len(shown)
        assert any(r.get("outcome") == "death" for r in shown)  # the death tick itself is there
        source.move_to(0)
        assert source.feed is not None and source.feed.path.read_bytes() == b""
        source.live()
        assert source.feed is not None and source.feed.path == trace
        prefix_dir = source._prefix_dir
        assert prefix_dir is not None and prefix_dir.is_dir()
    finally:
        source.stop()
    assert not prefix_dir.exists()


def test_live_session_pause_scrub_back_and_return(tmp_path: Path) -> None:
    """On a running supervisor: the replay follows the newest event, stays put once scrubbed back while new
    events arrive, and F (live) returns to the newest; a decision is refused in the past, accepted live."""
    from tests.spine_helpers import has_event, spawn, wait_for, write_plan
    from tests.test_step_retry import RETRY_PLAN

    write_plan(tmp_path, RETRY_PLAN)
    proc = spawn("run", "--headless", "--session", "x", cwd=tmp_path)
    session = tmp_path / "sessions" / "x"
    try:
        wait_for(lambda: has_event(session, "gate_opened", "B.release"), 60, "the gate")
        wait_for(lambda: has_event(session, "step_failed", "A.fetch"), 60, "A.fetch to fail")  # (it may come later)
        source = ReplaySource(session, operator="ann", follow=True)
        assert source.following and source.position == len(source.timeline) - 1
        source.move_to(source.timeline.marks["failure"][0])  # A.fetch failing
        paused_at = source.position
        assert not source.following
        (tmp_path / "ready").touch()
        r = phasef("retry", "x", "--step", "A.fetch", "--as", "ann", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: has_event(session, "step_succeeded", "A.use"), 60, "the retry to finish")
        source.read_journal()
        assert source.position == paused_at and len(source.timeline) > paused_at + 5
        assert source.session_view(0).step("A.fetch").state == "failed"  # type: ignore[union-attr]
        with pytest.raises(ApprovalError, match="in the past"):
            source.approve("B.release", "go", "too early")
        source.live()
        assert source.position == len(source.timeline) - 1
        assert source.session_view(0).step("A.use").state == "succeeded"  # type: ignore[union-attr]
        (tmp_path / "fast").touch()
        phasef("cancel", "x", "--step", "A.long", "--as", "ann", cwd=tmp_path)
        wait_for(lambda: has_event(session, "step_cancelled", "A.long"), 60, "the cancel")
        source.read_journal()
        assert source.position == len(source.timeline) - 1  # following again
        # a one-gate plan has no comparison nor audit: its GO is an override of the unmet pass criteria
        assert "signed by ann" in source.approve("B.release", "go", "fine now", override=True)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out  # A.long was cancelled


@pytest.mark.skipif(__import__("shutil").which("tmux") is None, reason="tmux is not installed")
def test_replay_in_tmux_first_event_gate_and_death(session: Path, tmux: Tmux) -> None:
    """The real ``phasef replay`` in a private tmux server: the first event, then the gate (waiting, as it was),
    then a death tick (the evaluation running)."""
    import sys

    from tests.spine_helpers import ROOT, wait_for

    def screen() -> str:
        return tmux.screen("m")

    def keys(*names: str) -> None:
        tmux.send("m", *names, pause=0.3)

    tmux.start("m", [sys.executable, "-m", "phasef_tui.cli", "replay", str(session), "--as", "ann"], 120, 36, cwd=ROOT)
    wait_for(lambda: "REPLAY" in screen() and "session_started" in screen(), 30, "the first event")
    assert "1/" in screen() and "no gate waiting" in screen()
    keys("m", "m", ">")  # landmark kind: gate
    wait_for(lambda: "gate_opened C.release" in screen(), 15, f"the gate:\n{screen()}")
    assert "1 gate waiting" in screen() and "jump: gate" in screen()
    keys("m", "m", "<")  # kind: death, the last death tick before the gate
    wait_for(lambda: "step_progress A.eval" in screen() and "jump: death" in screen(), 15, f"death:\n{screen()}")
    assert "no gate waiting" in screen()
    keys("F")
    wait_for(lambda: "LIVE" in screen() and "run_finished" in screen(), 15, f"live:\n{screen()}")
    keys("q")
    assert tmux.wait_exit("m", 15) == 0
