"""``phasef trace export FILE --to otlp-json``: a dirty trace as OpenTelemetry GenAI spans, and back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from phasef_tui.cli import main
from pipeline.traces.analysis import analyze
from pipeline.traces.importers import detect_format, import_trace

FOREIGN = Path(__file__).parent / "fixtures" / "foreign"
CODEX = next((FOREIGN / "codex" / "sessions").rglob("rollout-*.jsonl"))  # the hand-written rollout
CLAUDE = FOREIGN / "claude-code" / "-home-dev-shop-api" / "7f3c2a91-5d0e-4b7a-9c61-2e8f4d1b6a30.jsonl"
AIDER = FOREIGN / "aider" / "chat-history-excerpt.md"
RECORDED_CODEX = sorted((FOREIGN / "codex" / "recorded").rglob("rollout-*.jsonl"))[0]  # Codex CLI 0.171.0, 9 ticks
RECORDED_OTEL = FOREIGN / "otel-genai" / "recorded" / "agent-runs.otlp.jsonl"


def _ticks(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["episode"], r["tick"], (r["action"] or {}).get("tool"), r["error_class"], r["outcome"], r.get("trap"))
        for r in records
        if r["kind"] == "tick"
    ]


@pytest.mark.parametrize("path", [CODEX, CLAUDE, AIDER, RECORDED_CODEX, RECORDED_OTEL])
def test_export_is_valid_otlp_and_imports_back_to_the_same_ticks(
    tmp_path: Path, path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canonical = tmp_path / "trace.jsonl"
    assert main(["trace", "import", str(path), "-o", str(canonical)]) == 0
    out = tmp_path / "trace.otlp.json"
    assert main(["trace", "export", str(canonical), "--to", "otlp-json", "-o", str(out)]) == 0
    assert f"-> {out}" in capsys.readouterr().err

    doc = json.loads(out.read_text())
    (resource_spans,) = doc["resourceSpans"]
    assert {"key": "service.name", "value": {"stringValue": "phasef"}} in resource_spans["resource"]["attributes"]
    (scope,) = resource_spans["scopeSpans"]
    spans = scope["spans"]
    records, _ = import_trace(canonical)
    ticks = [r for r in records if r["kind"] == "tick"]
    episodes = {r["episode"] for r in records}
    assert len(spans) == len(ticks) + len(episodes)
    for span in spans:
        assert re.fullmatch(r"[0-9a-f]{32}", span["traceId"]) and re.fullmatch(r"[0-9a-f]{16}", span["spanId"])
        assert int(span["startTimeUnixNano"]) <= int(span["endTimeUnixNano"])
        assert span["status"]["code"] in (1, 2)
    assert len({s["traceId"] for s in spans}) == len(episodes)
    failing = [s for s in spans if s["status"]["code"] == 2 and s["parentSpanId"]]
    assert len(failing) == sum(1 for t in ticks if t["error_class"])

    assert detect_format(out) == "otel-genai"
    back, bad = import_trace(out)
    assert bad == []
    # same ticks, failures and traps; episodes keep their names (as the conversation id)
    assert _ticks(back) == _ticks(records)
    assert analyze(out).chains == analyze(canonical).chains


def test_export_reads_any_format_directly_and_marks_the_death(tmp_path: Path) -> None:
    otel = FOREIGN / "otel-genai" / "agent-run.otlp.json"
    out = tmp_path / "again.otlp.json"
    assert main(["trace", "export", str(otel), "--to", "otlp-json", "-o", str(out)]) == 0
    spans = json.loads(out.read_text())["resourceSpans"][0]["scopeSpans"][0]["spans"]
    roots = [s for s in spans if not s["parentSpanId"]]
    assert [r["status"]["code"] for r in roots] == [1, 2]
    assert roots[1]["status"]["message"] == "agent run exceeded 120 s"


def test_export_of_an_unreadable_file_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.otlp.json"
    assert main(["trace", "export", str(tmp_path / "missing.jsonl"), "--to", "otlp-json", "-o", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not out.exists()
