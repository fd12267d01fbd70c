"""``phasef trace view``: canonical files open in place, foreign formats are imported first, errors are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from phasef_tui.screens.traces import TracesScreen
from phasef_tui.trace_view import is_canonical_jsonl, prepare_trace_view, run_trace_view
from tests.tui_helpers import sample_records, write_trace
from widgets.trace_stream import TraceStream

SWE = Path("/work/shared/fixtures/foreign-traces/swe-agent/pydicom__pydicom-1458.traj")


def test_errors_are_named_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHASEF_CACHE_DIR", str(tmp_path / "cache"))
    assert run_trace_view(tmp_path / "missing.jsonl", False) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    assert run_trace_view(tmp_path, False) == 2
    assert "a folder with no trace that could be imported" in capsys.readouterr().err
    odd = tmp_path / "odd.json"
    odd.write_text('{"hello": "world"}')
    assert run_trace_view(odd, False) == 2
    assert "none of the known formats" in capsys.readouterr().err


def test_canonical_detection(tmp_path: Path) -> None:
    assert is_canonical_jsonl(write_trace(tmp_path / "t.jsonl", sample_records()))
    other = tmp_path / "o.jsonl"
    other.write_text('{"id": 1, "kind": "x", "episode": "e"}\n')
    assert not is_canonical_jsonl(other)
    assert not is_canonical_jsonl(tmp_path / "missing")


async def test_canonical_file_is_viewed_in_place(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records())
    view = prepare_trace_view(path, follow=True)
    assert not isinstance(view, str)
    assert view.temporary is None and view.problems == []
    async with view.app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.2)
        assert isinstance(view.app.screen, TracesScreen)
        assert view.app.screen.query_one(TraceStream).count == 15
        assert view.app.source.feed.path == path  # type: ignore[union-attr]
    view.close()


@pytest.mark.skipif(not SWE.exists(), reason="foreign trace fixtures not present")
async def test_foreign_trace_is_imported_then_viewed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHASEF_CACHE_DIR", str(tmp_path / "cache"))
    view = prepare_trace_view(SWE, follow=True)
    assert not isinstance(view, str)
    shown = view.app.source.feed.path  # type: ignore[union-attr]
    assert shown.parent == tmp_path / "cache" / "imports" and shown.exists()
    assert any("--follow needs canonical JSONL" in p for p in view.problems)
    async with view.app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        stream = view.app.screen.query_one(TraceStream)
        assert stream.count == 14, "episode start, 12 ticks, episode end"
        assert view.app.source.title == f"{SWE} (swe-agent)"
        assert any("--follow" in str(n.message) for n in view.app._notifications)
    view.close()
    assert shown.exists()  # kept in the cache: the next view opens it without importing again
