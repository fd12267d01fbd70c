"""Any format or run folder opened directly: ``trace stats`` and ``view`` import on the fly, cached by content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from phasef_tui.cli import main
from phasef_tui.screens.traces import TracesScreen
from phasef_tui.trace_view import prepare_trace_view
from pipeline.traces.importers.cache import import_cached
from widgets.trace_stream import TraceStream

FOREIGN = Path(__file__).parent / "fixtures" / "foreign"
CODEX = next((FOREIGN / "codex" / "sessions").rglob("rollout-*.jsonl"))  # the hand-written rollout


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PHASEF_CACHE_DIR", str(cache))
    return cache


def test_import_is_cached_by_content_and_redone_when_the_content_changes(tmp_path: Path) -> None:
    copy = tmp_path / "rollout.jsonl"
    shutil.copy(CODEX, copy)
    first = import_cached(copy)
    assert not first.cached and first.format == "codex" and first.problems == []
    again = import_cached(copy)
    assert again.cached and again.file == first.file
    assert again.file.read_bytes() == first.file.read_bytes()
    with open(copy, "a") as fh:
        fh.write('{"timestamp": "2025-10-14T16:09:00Z", "type": "mystery", "payload": {}}\n')
    changed = import_cached(copy)
    assert not changed.cached and changed.file != first.file
    lines = len(CODEX.read_text().splitlines()) + 1
    assert [str(p) for p in changed.problems] == [
        f"{copy}:{lines}: field 'type': unknown record type 'mystery'; skipped"
    ]
    assert [str(p) for p in import_cached(copy).problems] == [str(p) for p in changed.problems]  # kept with it


def test_a_damaged_cache_entry_is_imported_again(tmp_path: Path) -> None:
    first = import_cached(CODEX)
    first.file.with_name(first.file.stem + ".problems.json").write_text("{broken")
    again = import_cached(CODEX)
    assert not again.cached and again.file == first.file and again.file.read_text()


def test_stats_reads_a_run_folder_directly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "runs"
    shutil.copytree(FOREIGN, folder)
    assert main(["trace", "stats", "--json", str(folder)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["file"] == str(folder)
    # claude (3 hand-written, 3 recorded), codex (1 hand-written, 3 recorded), aider, voyager (6 hand-written,
    # 2 recorded), otel (2 hand-written traces, 4 recorded)
    assert result["episodes"] == 3 + 3 + 1 + 3 + 3 + 6 + 2 + 2 + 4 and result["bad_lines"] == []
    assert {"PatchFailed", "EditFailed", "ActionFailed", "RateLimitError"} <= set(result["error_classes"])
    assert main(["trace", "stats", "--json", str(folder)]) == 0  # from the cache, the same answer
    assert json.loads(capsys.readouterr().out) == result


def test_stats_of_a_foreign_file_keeps_its_own_name_and_hash(capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    assert main(["trace", "stats", "--json", str(CODEX)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["file"] == str(CODEX)
    assert result["sha256"] == hashlib.sha256(CODEX.read_bytes()).hexdigest()
    assert result["error_classes"]["PatchFailed"] == 1


async def test_view_opens_a_run_folder(tmp_path: Path) -> None:
    folder = tmp_path / "claude-project"
    shutil.copytree(FOREIGN / "claude-code", folder)
    view = prepare_trace_view(folder, follow=False)
    assert not isinstance(view, str)
    assert view.problems == []
    async with view.app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        assert isinstance(view.app.screen, TracesScreen)
        # three hand-written sessions: 10 + 6 + 4 records; three recorded ones: 4 + 11 + 4
        assert view.app.screen.query_one(TraceStream).count == 39
        assert view.app.source.title == f"{folder} (folder: claude-code 6)"
    view.close()


def test_detection_says_what_it_tried(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# notes\n\nnothing here is a trace\n")
    assert main(["trace", "stats", str(notes)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {notes}:1: neither canonical JSONL nor a valid JSON document" in err
    for name, looked_for in [
        ("aider", "Markdown with a '# aider chat started at' line"),
        ("codex", "JSONL lines {timestamp, type: session_meta|turn_context|response_item|event_msg, payload}"),
        ("otel-genai", "an OTLP JSON object with a 'resourceSpans' list"),
        ("swe-agent", "an object with a 'trajectory' list"),
    ]:
        assert f"{name} ({looked_for}" in err
    other = tmp_path / "other.json"
    other.write_text('{"hello": "world"}')
    assert main(["trace", "import", "--from", "otel-genai", str(other), "-o", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {other}: not an otel-genai file (expected an OTLP JSON object with a 'resourceSpans'" in err


async def test_view_with_a_forced_format(tmp_path: Path) -> None:
    copy = tmp_path / "session.log"  # a name that says nothing; the content is a Claude Code session
    shutil.copy(FOREIGN / "claude-code" / "-home-dev-shop-api" / "c41d8e07-92ab-4f36-8d5e-0b7a6e3f9c12.jsonl", copy)
    view = prepare_trace_view(copy, follow=False, fmt="claude-code")
    assert not isinstance(view, str)
    async with view.app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        assert view.app.screen.query_one(TraceStream).count == 4
        assert view.app.source.title == f"{copy} (claude-code)"
    view.close()
    assert main(["trace", "view", "--from", "nonsense", str(copy)]) == 2
