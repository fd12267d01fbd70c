"""Importers of agents' own session files: Claude Code, Codex CLI, Aider, Voyager, OpenTelemetry GenAI (OTLP JSON).

The files are in tests/fixtures/foreign (see SOURCES.md there: the Aider history is a verbatim excerpt of Aider's
own test fixture; the others used here are written by hand after each tool's format; recorded Claude Code and Voyager
sessions are tested in test_traces_importers_real.py). Each test first reads the file on its
own terms (plain json, plain text) to state what the file holds, then checks that the import finds exactly that.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.traces.analysis import analyze, analyze_records
from pipeline.traces.importers import UnknownFormat, detect_format, import_trace, voyager
from pipeline.traces.schema import parse_record

FIXTURES = Path(__file__).parent / "fixtures" / "foreign"
CLAUDE_DIR = FIXTURES / "claude-code" / "-home-dev-shop-api"
CLAUDE = CLAUDE_DIR / "7f3c2a91-5d0e-4b7a-9c61-2e8f4d1b6a30.jsonl"
CLAUDE_AGENT = CLAUDE_DIR / "agent-3e9a41c7.jsonl"
CLAUDE_TIMEOUT = CLAUDE_DIR / "c41d8e07-92ab-4f36-8d5e-0b7a6e3f9c12.jsonl"
CODEX = FIXTURES / "codex/sessions/2025/10/14/rollout-2025-10-14T16-02-00-0199e3a4-6b1f-7c20-9d4e-5a8b2c7f1e36.jsonl"
AIDER = FIXTURES / "aider" / "chat-history-excerpt.md"
VOYAGER = FIXTURES / "voyager" / "ckpt"
OTEL = FIXTURES / "otel-genai" / "agent-run.otlp.json"


def _ticks(records: list[dict[str, Any]], episode: str | None = None) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == "tick" and (episode is None or r["episode"] == episode)]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        (CLAUDE, "claude-code"),
        (CLAUDE_AGENT, "claude-code"),
        (CLAUDE_TIMEOUT, "claude-code"),
        (CODEX, "codex"),
        (AIDER, "aider"),
        (OTEL, "otel-genai"),
        (VOYAGER / "events" / "Craft_a_wooden_pickaxe_20230605_101512", "voyager"),
    ],
)
def test_detects_and_imports_valid_records_with_provenance(path: Path, fmt: str) -> None:
    assert detect_format(path) == fmt
    records, bad = import_trace(path)
    assert bad == []
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert records[0]["kind"] == "episode_start" and records[-1]["kind"] == "episode_end"
    for record in records:
        parse_record(record)
        assert record["source"]["format"] == fmt
        assert record["source"]["file"] == str(path)
        assert record["source"]["sha256"] == sha
    for episode in {r["episode"] for r in records}:
        numbers = [r["tick"] for r in _ticks(records, episode)]
        assert numbers == list(range(len(numbers)))


def test_claude_code_session_failures_rejection_and_recovery() -> None:
    lines = _lines(CLAUDE)
    results = [
        b for line in lines if line["type"] == "user" and isinstance(line["message"]["content"], list)
        for b in line["message"]["content"] if b["type"] == "tool_result"
    ]  # fmt: skip
    calls = [
        b
        for line in lines
        if line["type"] == "assistant"
        for b in line["message"]["content"]
        if b["type"] == "tool_use"
    ]
    assert len(calls) == len(results) == 7
    errors = [r for r in results if r.get("is_error")]
    assert [e["content"].split("\n")[0][:40] for e in errors] == [
        "Exit code 1",
        "<tool_use_error>String to replace not fo",
        "The user doesn't want to proceed with th",
    ]

    records, bad = import_trace(CLAUDE)
    assert bad == []
    ticks = _ticks(records)
    # a tick per tool call, and one for the closing text answer; the text streamed before a call is its reasoning
    assert [t["action"]["tool"] for t in ticks] == ["bash", "Read", "Edit", "Edit", "bash", "bash", "Task", "respond"]
    assert ticks[0]["raw_output"] == "I'll start by running the failing test to see the error."
    assert [(t["tick"], t["error_class"]) for t in ticks if t["outcome"] != "ok"] == [
        (0, "CheckFailed"),
        (2, "EditFailed"),
        (4, "ApprovalDenied"),
    ]
    assert ticks[0]["error"] == "exit code 1: FAILED tests/test_cart.py::test_cart_total - assert 1050.0 == 1000"
    assert ticks[2]["error"] == "String to replace not found in file."
    assert ticks[4]["action"]["args"]["command"].startswith("git commit")
    start, end = records[0], records[-1]
    assert start["task"] == lines[1]["message"]["content"]
    assert start["model"] == "claude-sonnet-4-20250514" and start["episode"] == lines[1]["sessionId"]
    assert end["outcome"] == "success" and end["solved"] is False
    # the respond tick is answered by nothing (the session ends); the rejected push by the rejection text
    assert ticks[4]["observation"].startswith("The user doesn't want to proceed")

    analysis = analyze(CLAUDE)
    by_class = {c.failure_class: c for c in analysis.chains}
    assert by_class["EditFailed"].outcome == "recovered" and by_class["EditFailed"].ticks == [2, 3]
    assert by_class["CheckFailed"].outcome == "recovered"  # the same pytest command passes at tick 5
    assert analysis.mttr_seconds is not None  # real timestamps: seconds are measured, not invented


def test_claude_code_subagent_file_is_its_own_episode_with_a_schema_violation() -> None:
    lines = _lines(CLAUDE_AGENT)
    assert all(line["isSidechain"] is True and line["agentId"] == "3e9a41c7" for line in lines)
    records, _ = import_trace(CLAUDE_AGENT)
    assert records[0]["episode"] == f"{lines[0]['sessionId']}/agent-3e9a41c7"
    assert records[0]["subagent"] is True
    ticks = _ticks(records)
    assert [(t["action"]["tool"], t["error_class"]) for t in ticks] == [
        ("Grep", "SchemaViolation"),
        ("Grep", None),
        ("Read", None),
        ("respond", None),
    ]
    assert ticks[0]["error"].startswith("InputValidationError: Grep failed")


def test_claude_code_timeout_then_interrupted_turn_ends_aborted() -> None:
    records, _ = import_trace(CLAUDE_TIMEOUT)
    ticks = _ticks(records)
    assert [(t["outcome"], t["error_class"]) for t in ticks] == [("timeout", "Timeout"), ("error", "Interrupted")]
    assert ticks[0]["error"] == "Command timed out after 2m 0.0s"
    end = records[-1]
    assert (end["outcome"], end["reason"]) == ("aborted", "the last turn was interrupted by the user")


def test_codex_rollout_exit_codes_sandbox_patch_timeout_and_abort() -> None:
    lines = _lines(CODEX)
    assert {line["type"] for line in lines} == {"session_meta", "response_item", "event_msg", "turn_context"}
    outputs = {
        line["payload"]["call_id"]: line["payload"]["output"]
        for line in lines
        if line["type"] == "response_item" and line["payload"]["type"].endswith("_output")
    }
    # the failing pytest run states its exit code only in the output text; the timeout only in JSON metadata
    assert outputs["call_Py5"].startswith("Exit code: 1\n") and "exec_command_end" not in json.dumps(
        [line for line in lines if line["payload"].get("call_id") == "call_Py5" and line["type"] == "event_msg"]
    )
    assert json.loads(outputs["call_Py8"])["metadata"]["exit_code"] == 124
    assert "call_Rf11" not in outputs  # the last call was interrupted before it answered

    records, bad = import_trace(CODEX)
    assert bad == []
    ticks = _ticks(records)
    assert len(ticks) == 12
    failing = [(t["tick"], t["action"]["tool"], t["error_class"]) for t in ticks if t["outcome"] != "ok"]
    assert failing == [
        (1, "apply_patch", "PatchFailed"),
        (4, "shell", "CheckFailed"),
        (5, "shell", "SandboxDenied"),
        (6, "shell", "ApprovalDenied"),
        (7, "shell", "Timeout"),
        (11, "shell", "Interrupted"),
    ]
    assert ticks[4]["exit_code"] == 1 and ticks[7]["exit_code"] == 124 and ticks[7]["outcome"] == "timeout"
    assert ticks[0]["action"] == {
        "tool": "shell",
        "args": {"command": 'rg -n "def parse_date" src', "workdir": "/home/dev/dateparse"},
    }
    assert ticks[1]["error"].startswith("Failed to find expected lines in /home/dev/dateparse/src/dateparse/core.py")
    assert ticks[10]["action"]["tool"] == "respond" and ticks[10]["observation"] == "also run the linter"
    start, end = records[0], records[-1]
    assert start["task"].startswith("parse_date should accept ISO week dates")  # not the environment context
    assert start["model"] == "gpt-5-codex" and start["episode"] == lines[0]["payload"]["id"]
    assert (end["outcome"], end["reason"]) == ("aborted", "the last turn was aborted")

    analysis = analyze(CODEX)
    patch = next(c for c in analysis.chains if c.failure_class == "PatchFailed")
    assert patch.outcome == "recovered" and patch.ticks[-1] == 3


def test_aider_sessions_edit_failures_reflections_and_interrupts() -> None:
    text = AIDER.read_text()
    sessions = text.count("\n# aider chat started at") + text.startswith("# aider chat started at")
    assert sessions == 3
    assert text.count("SEARCH/REPLACE block failed to match!") == 2
    assert text.count("^C again to exit") == 2 and text.count("^C KeyboardInterrupt") == 1

    records, bad = import_trace(AIDER)
    assert bad == []
    episodes = [r["episode"] for r in records if r["kind"] == "episode_start"]
    assert episodes == [
        "session-0 2024-08-06 09:52:26",
        "session-1 2024-08-06 12:32:55",
        "session-2 2024-08-06 14:13:01",
    ]
    first = _ticks(records, episodes[0])
    assert [(t["error_class"], t["error"]) for t in first] == [
        ("SchemaViolation", "Expected `>>>>>>> REPLACE` not `=======")
    ]
    second = _ticks(records, episodes[1])
    assert [t["error_class"] for t in second] == ["ConnectionError"] and second[0]["action"] is None
    third = _ticks(records, episodes[2])
    assert [t["error_class"] for t in third] == [
        "ConnectionError",  # Overloaded: no reply at all
        "Interrupted",  # the user stopped the next attempt
        "EditFailed",
        "EditFailed",  # a reflection: aider sent the failure back and the model tried again
        "Interrupted",  # the user stopped the second reflection
    ]
    assert [t.get("reflection", False) for t in third] == [False, False, False, True, True]
    assert third[2]["error"] == "This SEARCH block failed to exactly match lines in aider/repomap.py"
    ends = [r for r in records if r["kind"] == "episode_end"]
    assert [e["outcome"] for e in ends] == ["failure", "failure", "aborted"]
    starts = [r for r in records if r["kind"] == "episode_start"]
    assert starts[2]["model"] == "claude-3-5-sonnet-20240620"
    assert starts[2]["task"].startswith("remove `cache_missing`")

    analysis = analyze(AIDER)
    edit = next(c for c in analysis.chains if c.failure_class == "EditFailed")
    assert (edit.ticks, edit.attempts, edit.outcome) == ([2, 3, 4], 2, "open")  # never applied before the ^C


def test_voyager_checkpoint_episodes_from_events_and_curriculum() -> None:
    events = sorted(p.name for p in (VOYAGER / "events").iterdir())
    completed = json.loads((VOYAGER / "curriculum" / "completed_tasks.json").read_text())
    failed = json.loads((VOYAGER / "curriculum" / "failed_tasks.json").read_text())
    assert len(events) == 12 and failed == ["Mine 3 iron ore"] and "Craft a wooden pickaxe" in completed
    on_error = [n for n in events if any(e[0] == "onError" for e in json.loads((VOYAGER / "events" / n).read_text()))]
    assert len(on_error) == 4
    empty = [n for n in events if json.loads((VOYAGER / "events" / n).read_text()) == []]
    assert empty == ["Craft_a_wooden_pickaxe_20230605_101630"]

    records, bad = voyager.convert_checkpoint(VOYAGER)
    assert bad == []
    for record in records:
        parse_record(record)
    assert {r["run_id"] for r in records} == {"voyager:ckpt"}
    ends = {r["task_id"]: (r["outcome"], r["reason"]) for r in records if r["kind"] == "episode_end"}
    assert ends == {
        "Mine 1 wood log": ("success", "in completed_tasks.json"),
        "Craft 4 oak planks": ("success", "in completed_tasks.json"),
        "Craft a wooden pickaxe": ("success", "in completed_tasks.json"),
        "Mine 3 iron ore": ("failure", "in failed_tasks.json"),
        "Mine 5 cobblestone": ("success", "in completed_tasks.json"),
        "Craft a stone pickaxe": ("aborted", "in neither completed_tasks.json nor failed_tasks.json"),
    }
    pickaxe = [t for t in _ticks(records) if t["task_id"] == "Craft a wooden pickaxe"]
    assert [t["error_class"] for t in pickaxe] == ["TypeError", "SchemaViolation", "ActionFailed", None]
    assert [Path(t["source"]["file"]).name for t in pickaxe] == events[2:6]
    iron = [t for t in _ticks(records) if t["task_id"] == "Mine 3 iron ore"]
    assert [t["error_class"] for t in iron] == ["ReferenceError", "ActionFailed", "Timeout", "Timeout"]
    analysis = analyze_records(records)
    chain = next(c for c in analysis.chains if c.failure_class == "TypeError")
    assert chain.outcome == "recovered"


def test_otel_genai_spans_tool_errors_rate_limit_and_dead_trace() -> None:
    doc = json.loads(OTEL.read_text())
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    failed = [s["name"] for s in spans if s["status"].get("code") == 2]
    assert failed == [
        "execute_tool read_file",
        "chat gpt-4o",
        "execute_tool run_tests",
        "invoke_agent repo-fixer",
        "chat gpt-4o",
    ]
    records, bad = import_trace(OTEL)
    assert bad == []
    starts = [r for r in records if r["kind"] == "episode_start"]
    assert [s["episode"] for s in starts] == ["conv_5j66UpCpwteGg4YSxUnt7lPY", "0af7651916cd43dd8448eb211c80319c"]
    assert starts[0]["model"] == "gpt-4o-2024-08-06" and starts[0]["task_id"] == "repo-fixer"
    ticks = _ticks(records, starts[0]["episode"])
    assert [(t["action"]["tool"] if t["action"] else None, t["error_class"]) for t in ticks] == [
        ("read_file", "FileNotFoundError"),
        ("list_files", None),
        ("read_file", None),
        ("edit_file", None),
        (None, "RateLimitError"),
        ("run_tests", "Timeout"),
    ]
    assert ticks[0]["latency_s"] == pytest.approx(1.8) and ticks[0]["prompt_tokens"] == 812
    assert ticks[0]["action"]["args"] == {"path": "export/csv.py"}
    ends = [r for r in records if r["kind"] == "episode_end"]
    assert [(e["outcome"], e["error_class"]) for e in ends] == [("success", None), ("death", "Timeout")]
    # the environment's part: a rate limit is a flaky endpoint, the two timeouts are hangs (one killed the run)
    assert [t["trap"] for t in _ticks(records) if t["trap"]] == ["flaky", "hang", "hang"]
    analysis = analyze(OTEL)
    assert analysis.traps == {"flaky": 1, "hang": 2}
    assert [(d.reason, d.error_class) for d in analysis.deaths] == [("agent run exceeded 120 s", "Timeout")]


@pytest.mark.parametrize("path", [CLAUDE, CODEX])
def test_truncated_last_line_and_unknown_record_type_are_reported_and_skipped(tmp_path: Path, path: Path) -> None:
    copy = tmp_path / path.name
    text = path.read_text()
    whole = text.splitlines()
    unknown = json.dumps({"type": "holographic_projection", "timestamp": "2025-10-14T16:09:00Z", "payload": {}})
    copy.write_text("\n".join([*whole[:3], unknown, *whole[3:]]) + "\n" + whole[-1][: len(whole[-1]) // 2])
    records, bad = import_trace(copy)
    assert [(b.line, b.reason.split(":")[0]) for b in bad] == [
        (4, "field 'type'"),
        (len(whole) + 2, "torn last line (no newline at end of file)"),
    ]
    assert "'holographic_projection'" in bad[0].reason
    original, _ = import_trace(path)
    # everything before the torn line is still there
    assert len(_ticks(records)) >= len(_ticks(original)) - 1


def test_aider_invalid_utf8_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    copy = tmp_path / ".aider.chat.history.md"
    data = AIDER.read_bytes().replace(b"can we include TZ info", b"can we include \xff\xfe info", 1)
    copy.write_bytes(data)
    line = data[: data.index(b"\xff")].count(b"\n") + 1
    records, bad = import_trace(copy)
    assert [b.line for b in bad] == [line] and "invalid UTF-8" in bad[0].reason
    assert len(_ticks(records)) == len(_ticks(import_trace(AIDER)[0]))


def test_forced_format_that_does_not_fit_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownFormat, match=r"agent-run\.otlp\.json"):
        import_trace(OTEL, "swe-agent")
    records, bad = import_trace(OTEL, "claude-code")  # a JSON document read as JSONL: every line is bad
    assert records[-1]["kind"] == "episode_end" and bad and all(b.file == str(OTEL) for b in bad)
    folder_copy = tmp_path / "ckpt"
    shutil.copytree(VOYAGER, folder_copy)
    with pytest.raises(IsADirectoryError):
        detect_format(folder_copy)


def test_otel_openinference_spans_are_read_like_genai_ones(tmp_path: Path) -> None:
    """Phoenix and the OpenInference instrumentations name span kinds with ``openinference.span.kind``."""

    def attrs(values: dict[str, str]) -> list[dict[str, Any]]:
        return [{"key": k, "value": {"stringValue": v}} for k, v in values.items()]

    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    spans = [
        {"traceId": trace, "spanId": "00f067aa0ba902b7", "name": "agent", "startTimeUnixNano": "1000000000",
         "endTimeUnixNano": "9000000000", "attributes": attrs({"openinference.span.kind": "AGENT",
         "input.value": "Which files mention VAT?"}), "status": {"code": "STATUS_CODE_OK"}},
        {"traceId": trace, "spanId": "00f067aa0ba902b8", "parentSpanId": "00f067aa0ba902b7", "name": "grep",
         "startTimeUnixNano": "2000000000", "endTimeUnixNano": "2500000000",
         "attributes": attrs({"openinference.span.kind": "TOOL", "tool.name": "grep",
                              "input.value": '{"pattern": "VAT"}', "output.value": ""}),
         "status": {"code": "STATUS_CODE_ERROR", "message": "grep: src: No such file or directory"}},
        {"traceId": trace, "spanId": "00f067aa0ba902b9", "parentSpanId": "00f067aa0ba902b7", "name": "grep",
         "startTimeUnixNano": "3000000000", "endTimeUnixNano": "3500000000",
         "attributes": attrs({"openinference.span.kind": "TOOL", "tool.name": "grep",
                              "input.value": '{"pattern": "VAT", "path": "shop"}', "output.value": "shop/tax.py"}),
         "status": {"code": "STATUS_CODE_OK"}},
    ]  # fmt: skip
    path = tmp_path / "phoenix.json"
    path.write_text(json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": spans}]}]}))
    assert detect_format(path) == "otel-genai"
    records, bad = import_trace(path)
    assert bad == []
    ticks = _ticks(records)
    assert [(t["action"]["tool"], t["action"]["args"], t["error_class"]) for t in ticks] == [
        ("grep", {"pattern": "VAT"}, "ToolError"),
        ("grep", {"pattern": "VAT", "path": "shop"}, None),
    ]
    assert ticks[0]["error"] == "grep: src: No such file or directory"
    assert ticks[1]["observation"] == "shop/tax.py"
    assert records[0]["task"] == "Which files mention VAT?"
    assert analyze(path).chains[0].outcome == "recovered"


def test_otlp_lines_with_an_unknown_record_and_a_torn_last_line(tmp_path: Path) -> None:
    doc = json.loads(OTEL.read_text())
    path = tmp_path / "spans.jsonl"  # what the collector's file exporter writes: one request per line
    lines = [json.dumps(doc), json.dumps({"resourceMetrics": []}), json.dumps(doc)[:500]]
    path.write_text("\n".join(lines))
    assert detect_format(path) == "otel-genai"
    records, bad = import_trace(path)
    assert [(b.line, b.reason.split(" (")[0]) for b in bad] == [
        (2, "not an OTLP export request"),
        (3, "torn last line"),
    ]
    assert len(_ticks(records)) == len(_ticks(import_trace(OTEL)[0])) == 7


def test_voyager_damaged_events_file_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    copy = tmp_path / "ckpt"
    shutil.copytree(VOYAGER, copy)
    damaged = copy / "events" / "Mine_3_iron_ore_20230605_102411"
    damaged.write_text(damaged.read_text()[:300])
    (copy / "curriculum" / "failed_tasks.json").write_text('["Mine 3 iron ore",')
    records, bad = voyager.convert_checkpoint(copy)
    cut_line = damaged.read_text().count("\n") + 1
    assert [(Path(b.file).name, b.line, b.reason) for b in bad] == [
        ("failed_tasks.json", 1, "invalid JSON at column 20: unexpected end of data"),
        ("Mine_3_iron_ore_20230605_102411", cut_line, "invalid JSON at column 26: unexpected end of data"),
    ]
    iron = [t for t in _ticks(records) if t["task_id"] == "Mine 3 iron ore"]
    assert [t["error_class"] for t in iron] == ["ReferenceError", "Timeout", "Timeout"]  # the damaged one is skipped
    end = next(r for r in records if r["kind"] == "episode_end" and r["task_id"] == "Mine 3 iron ore")
    # without a readable failed_tasks.json the run's verdict on this task is unknown
    assert (end["outcome"], end["reason"]) == ("aborted", "in neither completed_tasks.json nor failed_tasks.json")


def test_claude_code_api_error_at_the_end_is_a_death(tmp_path: Path) -> None:
    lines = _lines(CLAUDE)
    last = lines[-1]
    error = {
        **{k: last[k] for k in ("isSidechain", "userType", "cwd", "sessionId", "version", "gitBranch")},
        "parentUuid": last["uuid"],
        "type": "assistant",
        "uuid": "ffffffff-1c2d-4e5f-8a9b-ffffffffffff",
        "timestamp": "2025-08-28T09:17:10.000Z",
        "isApiErrorMessage": True,
        "message": {
            "id": "a1b2c3d4-0000-4000-8000-000000000000",
            "model": "<synthetic>",
            "role": "assistant",
            "type": "message",
            "content": [
                {"type": "text", "text": 'API Error: 529 {"type":"error","error":{"type":"overloaded_error"}}'}
            ],
        },
    }
    copy = tmp_path / CLAUDE.name
    copy.write_text(CLAUDE.read_text() + json.dumps(error) + "\n")
    records, bad = import_trace(copy)
    assert bad == []
    tick = _ticks(records)[-1]
    assert (tick["action"], tick["error_class"], tick["trap"]) == (None, "ConnectionError", "flaky")
    end = records[-1]
    assert (end["outcome"], end["error_class"]) == ("death", "ConnectionError")
    assert end["reason"].startswith("API Error: 529")
    assert records[0]["model"] == "claude-sonnet-4-20250514"  # not the <synthetic> of the error message
    (death,) = analyze(copy).deaths
    assert death.error_class == "ConnectionError"


def test_codex_error_event_at_the_end_is_a_death(tmp_path: Path) -> None:
    lines = CODEX.read_text().splitlines()
    error = {
        "timestamp": "2025-10-14T16:04:40.000Z",
        "type": "event_msg",
        "payload": {"type": "error", "message": "Codex ran out of room in the model's context window."},
    }
    copy = tmp_path / CODEX.name
    copy.write_text("\n".join([*lines[:-2], json.dumps(error)]) + "\n")  # without the aborted second turn
    records, _ = import_trace(copy)
    end = records[-1]
    assert (end["outcome"], end["error_class"]) == ("death", "ContextOverflow")
    assert end["reason"] == "Codex ran out of room in the model's context window."


def test_codex_older_rollout_without_the_record_wrapper(tmp_path: Path) -> None:
    """Rollouts of the first Rust CLIs: a bare session line, bare response items, ``record_type: state`` lines."""
    lines = _lines(CODEX)
    meta = lines[0]["payload"]
    old = [{"id": meta["id"], "timestamp": meta["timestamp"], "instructions": None}, {"record_type": "state"}]
    old += [line["payload"] for line in lines if line["type"] == "response_item"]
    path = tmp_path / "rollout-2025-05-07T17-24-21-old.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in old))
    assert detect_format(path) == "codex"
    records, bad = import_trace(path)
    assert bad == []
    assert records[0]["episode"] == meta["id"]
    failing = [(t["tick"], t["error_class"]) for t in _ticks(records) if t["outcome"] != "ok"]
    # the same failures as the wrapped rollout, read from the outputs alone (no exec_command_end, patch_apply_end or
    # turn_aborted events here): the last call has no output and the rollout ends aborted
    assert failing == [
        (1, "PatchFailed"),
        (4, "CheckFailed"),
        (5, "SandboxDenied"),
        (6, "ApprovalDenied"),
        (7, "Timeout"),
    ]
    assert (records[-1]["outcome"], records[-1]["reason"]) == ("aborted", "the last tool call has no output")
