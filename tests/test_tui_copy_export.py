"""Copy (OSC 52) and export (Markdown, JSON) from the Traces, Chains and Audit screens, driven by keys (Pilot)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from phasef_tui.app import PhasefApp
from phasef_tui.data_source import TraceFileSource
from phasef_tui.trace_feed import TraceFeed
from tests.tui_helpers import FIXED_NOW, ConstructedSource, constructed_session, sample_records, until, write_trace

SIZE = (100, 30)


def trace_app(tmp_path: Path, initial: str) -> tuple[PhasefApp, Path]:
    path = write_trace(tmp_path / "sample.jsonl", sample_records())
    source = TraceFileSource(TraceFeed(path, follow=False, display_name="sample.jsonl"))
    source.export_dir = tmp_path / "exports"  # type: ignore[attr-defined]
    return PhasefApp(source, blink=False, initial=initial, clock=lambda: FIXED_NOW), tmp_path / "exports"


def capture_terminal(app: PhasefApp) -> list[str]:
    """What the app writes to the terminal (to see the OSC 52 sequence itself)."""
    written: list[str] = []
    driver = app._driver
    assert driver is not None
    original = driver.write

    def write(data: str) -> None:
        written.append(data)
        original(data)

    driver.write = write  # type: ignore[method-assign]
    return written


def osc52(written: list[str]) -> str:
    seq = next(w for w in written if w.startswith("\x1b]52;c;"))
    return base64.b64decode(seq.removeprefix("\x1b]52;c;").rstrip("\a")).decode()


def exported(folder: Path, suffix: str) -> list[Path]:
    return sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []


async def test_copy_the_selected_record_and_export_a_filtered_slice(tmp_path: Path) -> None:
    app, out = trace_app(tmp_path, "traces")
    records = sample_records()
    async with app.run_test(size=SIZE) as pilot:
        assert await until(pilot, lambda: app.source.feed.index.complete and len(app.screen.selection or ()) == 15)
        written = capture_terminal(app)
        await pilot.press("home", "down", "down")  # line 3: the schema violation
        await pilot.press("y")
        assert await until(pilot, lambda: app.clipboard != "")
        assert json.loads(app.clipboard) == records[2]
        assert osc52(written) == app.clipboard, "sent to the terminal's clipboard with OSC 52"

        await pilot.press("s")  # schema errors only
        await pilot.press("E")
        assert await until(pilot, lambda: len(exported(out, ".json")) == 1)
        doc = json.loads(exported(out, ".json")[0].read_text())
        assert doc["filters"] == ["schema_error"] and doc["truncated"] is False
        schema_lines = [i + 1 for i, r in enumerate(records) if r.get("error_class") == "SchemaViolation"]
        assert [r["line"] for r in doc["records"]] == schema_lines
        assert [r["record"] for r in doc["records"]] == [records[n - 1] for n in schema_lines]

        await pilot.press("e")
        assert await until(pilot, lambda: len(exported(out, ".md")) == 1)
        md = exported(out, ".md")[0].read_text()
        assert md.startswith("# Trace slice: schema_error") and "- trace: `sample.jsonl`" in md
        rows = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
        assert [int(r.split("|")[1]) for r in rows] == schema_lines
        assert "| 3 | tick | e1 | 1 | model | error | SchemaViolation | c1:failure |" in md


async def test_copy_and_export_a_recovery_chain(tmp_path: Path) -> None:
    app, out = trace_app(tmp_path, "chains")
    records = sample_records()
    async with app.run_test(size=SIZE) as pilot:
        assert await until(pilot, lambda: app.source.feed.index.complete)
        await pilot.pause(0.2)
        written = capture_terminal(app)
        await pilot.press("y")
        assert await until(pilot, lambda: app.clipboard != "")
        text = app.clipboard
        assert text.startswith("# Recovery chain `c1`") and "ends: **recovered**" in text
        assert "- error: `SchemaViolation`" in text and "I think I should read the file" in text
        assert osc52(written) == text

        await pilot.press("E")
        assert await until(pilot, lambda: len(exported(out, ".json")) == 1)
        doc = json.loads(exported(out, ".json")[0].read_text())
        assert doc["chain"] == "c1" and doc["ends"] == "recovered" and doc["recovery"] == ["model", "schema_repair"]
        assert [t["line"] for t in doc["records"]] == [3, 4, 5]
        assert [t["record"] for t in doc["records"]] == records[2:5]
        await pilot.press("e")
        assert await until(pilot, lambda: len(exported(out, ".md")) == 1)
        assert exported(out, ".md")[0].read_text().rstrip("\n") == text.rstrip("\n"), "the file is what was copied"


async def test_copy_and_export_a_verdict_with_its_evidence_hashes(tmp_path: Path) -> None:
    source = ConstructedSource(constructed_session())
    source.export_dir = tmp_path / "exports"  # type: ignore[attr-defined]
    app = PhasefApp(source, blink=False, initial="audit", clock=lambda: FIXED_NOW)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        written = capture_terminal(app)
        await pilot.press("y")
        assert await until(pilot, lambda: app.clipboard != "")
        text = app.clipboard
        assert text.startswith("# Gate `B.sign_off`: operator sign-off") and "audit verdict: **NO-GO**" in text
        assert f"Bundle sha256: `{'cd' * 32}`" in text
        assert f"| report.json | `artifacts/A/eval/eval_report.json` | `{'1f' * 32}` |" in text
        assert "| verdict.json | `audit:verdict.json` | `MISSING` |" in text
        assert "### gemini, primary: **NO-GO**" in text and "- blocker: baseline gate failed: too few ticks" in text
        assert osc52(written) == text

        await pilot.press("E")
        out = tmp_path / "exports"
        assert await until(pilot, lambda: len(exported(out, ".json")) == 1)
        doc: dict[str, Any] = json.loads(exported(out, ".json")[0].read_text())
        assert doc["gate"] == "B.sign_off" and doc["evidence_sha256"] == "cd" * 32
        assert [e["sha256"] for e in doc["evidence"]] == ["1f" * 32, "2e" * 32, None]
        assert [(v["auditor"], v["verdict"], v["judged_sha256"]) for v in doc["verdicts"]] == [
            ("gemini", "NO-GO", "ab" * 32),
            ("claude", "NO-GO", "ab" * 32),
        ]
        await pilot.press("E")  # a second export never overwrites the first
        assert await until(pilot, lambda: len(exported(out, ".json")) == 2)


def test_a_long_slice_says_it_was_cut_and_exports_never_overwrite(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    import pytest

    from phasef_tui.exports import SLICE_LIMIT, slice_doc, slice_markdown, write_export

    records = sample_records()[:3]
    doc = slice_doc("t.jsonl", ["death"], [0, 1, 2], records, total=SLICE_LIMIT + 5)
    assert doc["truncated"] is True and doc["records_exported"] == 3
    assert f"- records: 3 of {SLICE_LIMIT + 5:,} (cut at {SLICE_LIMIT:,})" in slice_markdown(doc)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = write_export(tmp_path, "trace slice/death", "md", "one", now)
    second = write_export(tmp_path, "trace slice/death", "md", "two", now)
    assert first.name == "trace-slice-death-20260102-030405.md" and second.name.endswith("-2.md")
    assert first.read_text() == "one\n" and second.read_text() == "two\n"
    with pytest.raises(ValueError, match="unknown export format"):
        write_export(tmp_path, "x", "csv", "", now)
