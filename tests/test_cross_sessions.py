"""``phasef compare`` and ``phasef sessions`` on real sessions: two runs of the same workload with models of
different seeds (comparable), and one run of another workload seed (a different task set: refused)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cross_helpers import eval_plan, run_session
from tests.spine_helpers import phasef
from tests.tmux_helpers import Tmux


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cross") / "sessions"
    root.mkdir()
    run_session(root, "s-seed0", eval_plan(model_seed=0, workload_seed=1))
    run_session(root, "s-seed7", eval_plan(model_seed=7, workload_seed=1))
    run_session(root, "s-other-tasks", eval_plan(model_seed=0, workload_seed=2))
    return root


def test_compare_two_sessions_pairs_episodes(sessions: Path, tmp_path: Path) -> None:
    md = tmp_path / "out" / "cmp.md"
    md.parent.mkdir()
    r = phasef("compare", "s-seed0", "s-seed7", "--json", "--md", str(md), "--sessions", str(sessions), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "compared"
    assert doc["a"]["session"] == "s-seed0" and doc["b"]["session"] == "s-seed7"
    assert doc["a"]["step"] == doc["b"]["step"] == "A.eval"
    assert doc["pairs"] == 5
    by_name = {m["name"]: m for m in doc["metrics"]}
    assert {"schema_violation_rate", "mttr_s", "solved_rate", "latency_p50_s"} <= set(by_name)
    for m in doc["metrics"]:
        assert set(m) >= {"name", "a", "b", "delta", "beyond_noise"}
        assert isinstance(m["beyond_noise"], bool)
        if m["a"] is not None and m["b"] is not None:
            assert m["delta"] == pytest.approx(m["b"] - m["a"])
    # the figures are each run's own eval report's (the same computation as the in-session comparison)
    for side, name in (("a", "s-seed0"), ("b", "s-seed7")):
        report = json.loads((sessions / name / "artifacts/A/eval/eval_report.json").read_text())
        assert by_name["schema_violation_rate"][side] == report["schemaViolationRate"]
        assert by_name["solved_rate"][side] == pytest.approx(report["solved"] / report["episodes"])
        assert by_name["ticks_observed"][side] == report["ticksObserved"]
    assert doc["a"]["model"]["label"] != doc["b"]["model"]["label"]  # two different model folders
    assert set(doc["flips"]) == {"solved", "unsolved", "died", "survived"}
    assert isinstance(doc["residual_blockers"], list)
    text = md.read_text()
    assert "| metric | unit | A | B |" in text and "5 episode pairs" in text


def test_compare_names_a_step_and_a_report_path(sessions: Path, tmp_path: Path) -> None:
    report = sessions / "s-seed7" / "artifacts/A/eval/eval_report.json"
    r = phasef("compare", "s-seed0:A.eval", str(report), "--json", "--sessions", str(sessions), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["pairs"] == 5 and doc["b"]["session"] is None and doc["b"]["report"] == str(report)
    plain = phasef("compare", "s-seed0:eval", "s-seed7", "--sessions", str(sessions), cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "5 episode pairs" in plain.stdout and "schema-violation rate" in plain.stdout


def test_compare_refuses_a_different_task_set(sessions: Path, tmp_path: Path) -> None:
    r = phasef("compare", "s-seed0", "s-other-tasks", "--json", "--sessions", str(sessions), cwd=tmp_path)
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert doc["status"] == "refused" and doc["metrics"] == [] and doc["pairs"] == 0
    assert any("taskSetHash differs" in reason for reason in doc["refusal"])
    assert "refused: taskSetHash differs" in r.stderr and "same task set" in r.stderr


def test_compare_refuses_a_different_gate_config(sessions: Path, tmp_path: Path) -> None:
    """The same run judged by another gate (its report rewritten with another gate hash) is refused."""
    copy = tmp_path / "copy"
    shutil.copytree(sessions / "s-seed7" / "artifacts/A/eval", copy)
    report = json.loads((copy / "eval_report.json").read_text())
    report["gateConfigHash"] = "0" * 64
    report["trace"]["path"] = str(copy / "dirty_trace.jsonl")
    (copy / "eval_report.json").write_text(json.dumps(report))
    r = phasef("compare", "s-seed0", str(copy / "eval_report.json"), "--sessions", str(sessions), cwd=tmp_path)
    assert r.returncode == 2
    assert "gateConfigHash differs" in r.stderr and "same gate config" in r.stderr


def test_compare_marks_a_report_changed_since_the_session(sessions: Path, tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(sessions / "s-seed0", root / "a")
    shutil.copytree(sessions / "s-seed7", root / "b")
    path = root / "b" / "artifacts/A/eval/eval_report.json"
    path.write_text(path.read_text().replace('"verdict": "PASS"', '"verdict":  "PASS"'))
    r = phasef("compare", "a", "b", "--json", "--sessions", str(root), cwd=tmp_path)
    assert r.returncode == 2, r.stdout
    doc = json.loads(r.stdout)
    assert doc["b"]["changed_since_session"] is True
    assert any("changed since session b recorded it" in reason for reason in doc["refusal"])


def test_compare_unknown_references(sessions: Path, tmp_path: Path) -> None:
    r = phasef("compare", "s-seed0", "nope", "--sessions", str(sessions), cwd=tmp_path)
    assert r.returncode == 2 and "nope: no such session or eval report" in r.stderr
    r = phasef("compare", "s-seed0", "s-seed7:X.y", "--sessions", str(sessions), cwd=tmp_path)
    assert r.returncode == 2 and "no evaluation step 'X.y'" in r.stderr and "A.eval" in r.stderr


def test_sessions_lists_every_session(sessions: Path, tmp_path: Path) -> None:
    broken = tmp_path / "sessions"
    shutil.copytree(sessions, broken)
    bad = broken / "garbled"
    bad.mkdir()
    (bad / "journal.jsonl").write_text('{"seq": 1, "ts": "x", "type": "session_started"}\nnot json\n')
    r = phasef("sessions", "--json", "--sessions", str(broken), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = {row["id"]: row for row in doc["sessions"]}
    assert set(rows) == {"s-seed0", "s-seed7", "s-other-tasks", "garbled"}
    for name in ("s-seed0", "s-seed7"):
        row = rows[name]
        report = json.loads((broken / name / "artifacts/A/eval/eval_report.json").read_text())
        assert row["state"] == "completed" and row["exit_code"] == 0
        assert row["started"] and row["finished"] and row["duration_s"] > 0
        assert row["models"] and row["evals"] == ["A.eval"] and row["metrics_from"] == "A.eval"
        assert row["metrics"]["schema_violation_rate"] == report["schemaViolationRate"]
        assert row["metrics"]["mttr_s"] == report["mttr"]["seconds"]
        assert row["metrics"]["solved_share"] == pytest.approx(report["solved"] / report["episodes"])
    assert rows["garbled"]["problems"] and "garbled/journal.jsonl:2" in rows["garbled"]["problems"][0]
    text = phasef("sessions", "--sessions", str(broken), cwd=tmp_path)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["session", "state", "decision"]
    assert any(line.startswith("s-seed7 ") and "completed" in line for line in lines)


async def test_sessions_and_compare_screens_on_real_sessions(sessions: Path) -> None:
    """The Sessions screen lists the real sessions; marking two and pressing c shows their paired comparison;
    a mismatched pair is shown refused; Enter on a row chooses that session to open (attach)."""
    import asyncio
    import io

    from rich.console import Console

    from phasef_tui.app import PhasefApp
    from phasef_tui.sessions_source import SessionsSource
    from widgets.cross_table import render_body
    from widgets.sessions_table import SessionsTable

    source = SessionsSource(sessions, operator="ann")
    app = PhasefApp(source, blink=False)

    async def done() -> None:
        for _ in range(200):
            await asyncio.sleep(0.1)
            if source.comparison is not None and source.comparison.state == "done":
                await pilot.pause(0.2)
                return
        raise AssertionError("the comparison did not finish")

    async with app.run_test(size=(120, 36)) as pilot:
        for _ in range(100):
            await pilot.pause(0.1)
            if source.loaded:
                break
        await pilot.pause(0.2)
        table = app.screen.query_one("#sessions-table", SessionsTable)
        order = [str(k.value) for k in table.rows]
        assert sorted(order) == ["s-other-tasks", "s-seed0", "s-seed7"]
        for name in ("s-seed0", "s-seed7"):
            table.move_cursor(row=order.index(name))
            await pilot.press("space")
        assert source.marked == ["s-seed0", "s-seed7"]
        await pilot.press("c")
        await done()
        assert app.screen.SCREEN_NAME == "Compare"
        doc = source.comparison.doc  # type: ignore[union-attr]
        assert doc["status"] == "compared" and doc["pairs"] == 5
        head = str(app.screen.query_one("#compare-head").render())
        assert "s-seed0:A.eval" in head and "s-seed7:A.eval" in head and "5 episode pairs" in head
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(render_body(doc, "done"))
        body = console.export_text()
        assert "schema-violation rate" in body and "residual blockers of B" in body
        solved = next(m for m in doc["metrics"] if m["name"] == "solved_rate")
        assert f"{solved['a']:.4g}" in body
        await pilot.press("x")  # swap A and B
        await done()
        assert (source.comparison.a, source.comparison.b) == ("s-seed7", "s-seed0")  # type: ignore[union-attr]
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.screen.SCREEN_NAME == "Sessions"
        table.move_cursor(row=order.index("s-seed0"))
        await pilot.press("space")  # unmark s-seed0: s-seed7 is A now
        table.move_cursor(row=order.index("s-other-tasks"))
        await pilot.press("space", "c")
        await done()
        refused = source.comparison.doc  # type: ignore[union-attr]
        assert refused["status"] == "refused" and any("taskSetHash differs" in r for r in refused["refusal"])
        assert "REFUSED" in str(app.screen.query_one("#compare-head").render())
        await pilot.press("escape")
        await pilot.pause(0.1)
        table.move_cursor(row=order.index("s-seed7"))
        await pilot.press("enter")
        await pilot.pause(0.2)
    assert source.chosen == sessions / "s-seed7"


def test_sessions_tui_in_tmux_compares_then_attaches_and_comes_back(sessions: Path, tmux: Tmux) -> None:
    """The real ``phasef sessions --tui`` in a private tmux server: compare two real sessions, open one (the
    dashboard of that session), quit it and land back on the list."""
    import sys

    from tests.spine_helpers import ROOT, wait_for

    def screen() -> str:
        return tmux.screen("m")

    def keys(*names: str) -> None:
        tmux.send("m", *names, pause=0.3)

    argv = [sys.executable, "-m", "phasef_tui.cli", "sessions", "--tui", "--sessions", str(sessions), "--as", "ann"]
    tmux.start("m", argv, 120, 36, cwd=ROOT)
    wait_for(lambda: "3 sessions" in screen(), 30, "the sessions list")
    rows = [line.split()[0] for line in screen().splitlines() if line.strip().startswith("s-")]
    assert sorted(rows) == ["s-other-tasks", "s-seed0", "s-seed7"]
    keys(*["Up"] * 3)
    for name in ("s-seed0", "s-seed7"):
        keys(*["Up"] * 3, *["Down"] * rows.index(name), "Space")
    keys("c")
    wait_for(lambda: "5 episode pairs" in screen(), 60, "the comparison")
    text = screen()
    assert "A  s-seed0:A.eval" in text and "B  s-seed7:A.eval" in text and "schema-violation rate" in text
    keys("Escape", *["Up"] * 3, *["Down"] * rows.index("s-seed7"), "Enter")
    # (the tab bar is drawn before the dashboard's body: wait for both)
    wait_for(lambda: "session s-seed7 · ann" in screen() and "run completed" in screen(), 30, "s-seed7's dashboard")
    keys("q")
    wait_for(lambda: "3 sessions" in screen(), 30, "the list again")
    keys("q")
    assert tmux.wait_exit("m", 30) == 0


def test_matrix_spans_sessions(sessions: Path, tmp_path: Path) -> None:
    r = phasef("matrix", "--json", "--sessions", str(sessions), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    cols = {c["session"]: c for c in doc["columns"]}
    assert set(cols) == {"s-seed0", "s-seed7", "s-other-tasks"}
    assert doc["reference"] == doc["columns"][0]["name"]  # the oldest session's evaluation
    assert cols["s-other-tasks"]["comparable"] is False
    assert "task set differs from the reference run" in cols["s-other-tasks"]["not_comparable_because"]
    assert cols["s-seed7"]["comparable"] is True and cols["s-seed0"]["comparable"] is True
    solved = next(row for row in doc["rows"] if row["metric"] == "solved_rate")
    for col, value in zip(doc["columns"], solved["values"], strict=True):
        report = json.loads(Path(col["report"]).read_text())
        assert value == pytest.approx(report["solved"] / report["episodes"])
    md = tmp_path / "m.md"
    r = phasef("matrix", "s-seed7", "s-seed0:A.eval", "--md", str(md), "--sessions", str(sessions), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| s-seed7:A.eval | s-seed0:A.eval |" in md.read_text() and "Reference run: **s-seed7:A.eval**" in r.stdout
    r = phasef("matrix", "nope", "--sessions", str(sessions), cwd=tmp_path)
    assert r.returncode == 2 and "nope: no such session or eval report" in r.stderr
