"""``phasef trace import|stats|view`` through the real command line entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from phasef_tui.cli import main
from pipeline.traces.analysis import analyze

FIXTURES = Path("/work/shared/fixtures/foreign-traces")
SWE = FIXTURES / "swe-agent" / "pydicom__pydicom-1458.traj"
TAU_FAIL = FIXTURES / "tau-bench" / "gpt-4o-airline_task13_trial0_fail_thrash.json"
REPO = Path(__file__).resolve().parents[1]

needs_fixtures = pytest.mark.skipif(not FIXTURES.exists(), reason="foreign trace fixtures not present")


@pytest.fixture(autouse=True)
def _import_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Foreign traces are imported through the cache; keep it out of the home folder."""
    monkeypatch.setenv("PHASEF_CACHE_DIR", str(tmp_path / "cache"))


def _write_trace(path: Path) -> None:
    lines = [
        {"kind": "episode_start", "episode": "e", "ts": 1.0},
        {"kind": "tick", "episode": "e", "ts": 2.0, "tick": 0, "outcome": "error", "error_class": "Timeout",
         "action": {"tool": "run_tests", "args": {}}, "chain_id": "c1", "chain_role": "failure", "trap": "hang"},
        {"kind": "tick", "episode": "e", "ts": 5.0, "tick": 1, "outcome": "ok",
         "action": {"tool": "run_tests", "args": {}}, "chain_id": "c1", "chain_role": "recovered",
         "recovery": "watchdog"},
        {"kind": "episode_end", "episode": "e", "ts": 6.0, "outcome": "death", "reason": "killed", "ticks": 2},
    ]  # fmt: skip
    body = "\n".join(json.dumps(x) for x in lines[:2]) + "\n{oops\n" + "\n".join(json.dumps(x) for x in lines[2:])
    path.write_bytes(body.encode() + b'\n{"kind": "tick", "ep')


def test_stats_reports_findings_and_every_bad_line_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "trace.jsonl"
    _write_trace(path)
    assert main(["trace", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"trace: {path}" in out
    assert "recovery chains: 1 (1 recovered, 0 death, 0 open)" in out
    assert "c1 [e] ticks 0-1 Timeout: recovered after 1 attempt in 1 ticks / 3.000 s by watchdog" in out
    assert "MTTR: 1.00 ticks / 3.000 s" in out
    assert "[e] tick 1: killed (Timeout); last ticks [0, 1]" in out
    assert "trap interactions: hang=1" in out
    assert f"{path}:3: invalid JSON at column 2: unexpected character, expected a string key" in out
    assert f"{path}:6: torn last line (no newline at end of file)" in out


def test_stats_skips_lines_over_the_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "trace.jsonl"
    _write_trace(path)
    with open(path, "ab") as fh:
        fh.write(b'\n{"kind": "tick", "observation": "' + b"x" * (3 * 2**20) + b'"}\n')
    assert main(["trace", "stats", "--max-line-mb", "1", "--json", str(path)]) == 0
    bad = json.loads(capsys.readouterr().out)["bad_lines"]
    assert [b["line"] for b in bad] == [3, 6, 7]
    assert bad[2]["reason"] == f"line too long ({3 * 2**20 + 35} bytes > limit {2**20}); skipped"


def test_stats_json_is_the_analysis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "trace.jsonl"
    _write_trace(path)
    assert main(["trace", "stats", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(analyze(path).model_dump_json())
    assert [b["line"] for b in data["bad_lines"]] == [3, 6]


def test_stats_exits_2_when_the_file_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHASEF_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["trace", "stats", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["trace", "stats", str(empty)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {empty}: a folder with no trace that could be imported (0 file(s) tried)" in err
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert main(["trace", "stats", str(plain / "below")]) == 2
    assert main(["trace", "stats", "--from", "nonsense", str(plain)]) == 2
    assert "unknown format 'nonsense'" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_stats_exits_2_for_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.jsonl"
    _write_trace(path)
    path.chmod(0)
    assert main(["trace", "stats", str(path)]) == 2


@needs_fixtures
def test_stats_on_a_foreign_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "stats", str(SWE)]) == 0
    out = capsys.readouterr().out
    assert "ticks 5-8 SyntaxError: recovered after 3 attempts in 3 ticks" in out
    assert "ticks 5-7: bash:edit failed 3x with SyntaxError" in out
    assert "NOT shown bounded" in out


@needs_fixtures
def test_stats_thresholds_reach_the_analysis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "stats", "--json", str(TAU_FAIL)]) == 0
    default = json.loads(capsys.readouterr().out)
    assert [t["count"] for t in default["thrash"]] == [6]
    assert main(["trace", "stats", "--json", "--thrash-min", "7", "--deadlock-window", "1", str(TAU_FAIL)]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert tuned["thrash"] == []  # six failures are under seven
    reasons = [d["reason"] for d in tuned["deadlocks"]]
    assert len(reasons) >= 6 and set(reasons) <= {"no progress for 1 ticks", "no progress for 2 ticks"}


@needs_fixtures
def test_import_writes_canonical_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "tau.jsonl"
    assert main(["trace", "import", str(TAU_FAIL), "-o", str(out)]) == 0
    assert f"({'tau-bench'}): 30 records, 1 episodes, 28 ticks -> {out}" in capsys.readouterr().err
    lines = out.read_text().splitlines()
    assert len(lines) == 30 and json.loads(lines[0])["kind"] == "episode_start"
    assert analyze(out).thrash == analyze(TAU_FAIL).thrash
    assert main(["trace", "import", "--from", "swe-agent", str(TAU_FAIL), "-o", str(tmp_path / "x.jsonl")]) == 2
    assert "is not a swe-agent file" in capsys.readouterr().err


def test_view_hands_over_to_the_trace_viewer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Path, bool]] = []
    viewer = types.ModuleType("phasef_tui.trace_view")

    def run_trace_view(path: Path, follow: bool) -> int:
        seen.append((path, follow))
        return 0

    viewer.run_trace_view = run_trace_view  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "phasef_tui.trace_view", viewer)
    assert main(["trace", "view", str(tmp_path / "t.jsonl"), "--follow"]) == 0
    assert seen == [(tmp_path / "t.jsonl", True)]


def test_help_does_not_import_the_analysis() -> None:
    code = (
        "import sys; from phasef_tui.cli import build_parser; build_parser(); "
        "print(any(m.startswith('pipeline.traces') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
