"""Importers run on recorded sessions of the real tools.

Claude Code, Aider and Voyager recordings are copied verbatim from public repositories; the Codex CLI rollouts and the
OTLP exports were recorded on this machine by the real tools (``codex exec`` 0.171.0; the OpenTelemetry GenAI and
OpenInference instrumentations with the OTLP/HTTP exporter) with a scripted model double on loopback
(tests/fixtures/foreign/record_codex.py, record_otel_genai.py). Each is listed with its source and licence in
tests/fixtures/foreign/SOURCES.md. Each test first reads the file on its own terms (plain json) to state which
failures it holds, then checks that the import finds exactly those, named per file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.traces.analysis import analyze_records
from pipeline.traces.importers import detect_format, import_trace, voyager
from pipeline.traces.schema import parse_record

FOREIGN = Path(__file__).parent / "fixtures" / "foreign"
SPOTTER = FOREIGN / "claude-code" / "spotter"
CLAUDE_REJECTED = SPOTTER / "55604662-cf2a-4331-851a-ec234028f8ca.jsonl"
CLAUDE_SIBLINGS = SPOTTER / "4d5611e5-241a-462a-8d15-5122611a9569" / "subagents" / "agent-a2898e3.jsonl"
CLAUDE_TOO_LARGE = SPOTTER / "6c2214d7-b87e-4432-8e41-22ba294ea584" / "subagents" / "agent-afc096d.jsonl"
VOYAGER = FOREIGN / "voyager" / "mc-agent" / "ckpt"
CODEX_DAY = FOREIGN / "codex" / "recorded" / "sessions" / "2026" / "12" / "01"
CODEX_FIX = CODEX_DAY / "rollout-2026-12-01T03-38-14-01a22fae-7e5e-7683-859c-aacef099a4bf.jsonl"
CODEX_INTERRUPTED = CODEX_DAY / "rollout-2026-12-01T03-38-19-01a22fae-9395-7e03-911f-afb6063688d9.jsonl"
OTEL = FOREIGN / "otel-genai" / "recorded"
OTEL_GENAI = OTEL / "agent-runs.otlp.jsonl"
OTEL_OPENINFERENCE = OTEL / "openinference-agent-runs.otlp.jsonl"
CODEX_RATE_LIMITED = CODEX_DAY / "rollout-2026-12-01T03-38-23-01a22fae-a0f6-7940-9348-40ad816add39.jsonl"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ticks(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == "tick"]


def _blocks(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        block
        for line in lines
        if isinstance(line.get("message"), dict) and isinstance(line["message"].get("content"), list)
        for block in line["message"]["content"]
        if block.get("type") == kind
    ]


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        (CLAUDE_REJECTED, "claude-code"),
        (CLAUDE_SIBLINGS, "claude-code"),
        (CLAUDE_TOO_LARGE, "claude-code"),
        (CODEX_FIX, "codex"),
        (CODEX_INTERRUPTED, "codex"),
        (CODEX_RATE_LIMITED, "codex"),
        (OTEL_GENAI, "otel-genai"),
        (OTEL_OPENINFERENCE, "otel-genai"),
    ],
)
def test_real_files_are_detected_and_every_record_is_valid(path: Path, fmt: str) -> None:
    assert detect_format(path) == fmt
    records, bad = import_trace(path)
    assert bad == []
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert records[0]["kind"] == "episode_start" and records[-1]["kind"] == "episode_end"
    for record in records:
        parse_record(record)
        assert record["source"] == {**record["source"], "format": fmt, "file": str(path), "sha256": sha}
    for episode in {r["episode"] for r in records}:  # ticks numbered from 0 in each episode
        numbers = [t["tick"] for t in _ticks(records) if t["episode"] == episode]
        assert numbers == list(range(len(numbers)))


def test_claude_code_real_session_two_rejected_calls_then_interrupted() -> None:
    """Claude Code 2.1.38: the user rejects a Bash and a Glob call, then interrupts the turn."""
    lines = _lines(CLAUDE_REJECTED)
    assert {line.get("version") for line in lines if "version" in line} == {"2.1.38"}
    calls = _blocks(lines, "tool_use")
    results = _blocks(lines, "tool_result")
    assert [c["name"] for c in calls] == ["Bash", "Glob"]
    assert [r["is_error"] for r in results] == [True, True]
    assert all(r["content"].startswith("The user doesn't want to proceed with this tool use") for r in results)
    texts = [b["text"] for b in _blocks(lines, "text")]
    assert "[Request interrupted by user for tool use]" in texts

    records, bad = import_trace(CLAUDE_REJECTED)
    assert bad == []
    ticks = _ticks(records)
    assert [(t["action"]["tool"], t["outcome"], t["error_class"]) for t in ticks] == [
        ("bash", "error", "ApprovalDenied"),
        ("Glob", "error", "ApprovalDenied"),
    ]
    assert ticks[0]["action"]["args"]["command"] == calls[0]["input"]["command"] == "mix phx.server 2>&1 | head -80"
    assert ticks[0]["raw_output"] == "Let me check the project structure and try running the server to see the error."
    start, end = records[0], records[-1]
    assert start["episode"] == "55604662-cf2a-4331-851a-ec234028f8ca"
    assert start["task"] == "mix phx.server doesnt seem to start"
    assert start["model"] == "claude-opus-4-6"
    assert (end["outcome"], end["reason"]) == ("aborted", "the last turn was interrupted by the user")


def test_claude_code_real_subagent_missing_file_cancels_its_parallel_reads() -> None:
    """Claude Code 2.1.39 subagent: one of eight parallel Reads hits a missing file, the other seven are not run."""
    lines = _lines(CLAUDE_SIBLINGS)
    assert all(line["isSidechain"] is True and line["agentId"] == "a2898e3" for line in lines)
    results = _blocks(lines, "tool_result")
    errors = [r["content"] for r in results if r.get("is_error")]
    assert (
        errors
        == ["<tool_use_error>File does not exist.</tool_use_error>"]
        + ["<tool_use_error>Sibling tool call errored</tool_use_error>"] * 7
    )
    assert [r.get("is_error") for r in results][-1] is None  # the Glob that follows found nothing, without error

    records, bad = import_trace(CLAUDE_SIBLINGS)
    assert bad == []
    assert records[0]["episode"] == "4d5611e5-241a-462a-8d15-5122611a9569/agent-a2898e3"
    assert records[0]["subagent"] is True
    ticks = _ticks(records)
    assert [(t["action"]["tool"], t["error_class"]) for t in ticks] == [("Read", "NotFound")] + [
        ("Read", "Cancelled")
    ] * 7 + [("Glob", None)]
    assert ticks[0]["error"] == "File does not exist."
    assert ticks[0]["action"]["args"]["file_path"].endswith("lib/spotter_web/live/session_live.html.heex")
    assert all(t["error"] == "Sibling tool call errored" for t in ticks[1:8])
    assert ticks[8]["observation"] == "No files found" and ticks[8]["outcome"] == "ok"
    assert records[-1]["outcome"] == "success" and records[-1]["solved"] is False


def test_claude_code_real_subagent_file_too_large_then_read_in_part() -> None:
    """Claude Code 2.1.38 subagent: a Read of an 806 KB bundle is refused, the next Read asks for 50 lines of it."""
    lines = _lines(CLAUDE_TOO_LARGE)
    calls = _blocks(lines, "tool_use")
    results = _blocks(lines, "tool_result")
    assert [c["input"] for c in calls[1:]] == [{**calls[1]["input"], "limit": 50}]
    assert calls[0]["input"]["file_path"] == calls[1]["input"]["file_path"]
    assert results[0]["is_error"] is True and "exceeds maximum allowed size (256KB)" in results[0]["content"]
    assert results[1].get("is_error") is None

    records, bad = import_trace(CLAUDE_TOO_LARGE)
    assert bad == []
    ticks = _ticks(records)
    assert [(t["action"]["tool"], t["error_class"]) for t in ticks] == [("Read", "ContextOverflow"), ("Read", None)]
    assert ticks[0]["error"].startswith("File content (806.5KB) exceeds maximum allowed size (256KB).")
    assert ticks[1]["action"]["args"]["limit"] == 50
    assert ticks[1]["raw_output"].startswith("The app.js file is too large.")
    chain = next(c for c in analyze_records(records).chains if c.failure_class == "ContextOverflow")
    assert (chain.outcome, chain.ticks) == ("recovered", [0, 1])


def test_voyager_real_checkpoint_undefined_skill_and_four_failed_attempts() -> None:
    """A Voyager run (MC-Agent fork, 2025-04-19): "Craft a stone axe" crafts three times, then its fourth program
    calls a function it never defined; all four programs for "Mine 1 lapis ore" throw. Both tasks end failed."""
    names = sorted(p.name for p in (VOYAGER / "events").iterdir())
    events = {n: json.loads((VOYAGER / "events" / n).read_text()) for n in names}
    errors = {n: [e["onError"] for kind, e in doc if kind == "onError"] for n, doc in events.items()}
    assert [n for n in names if errors[n]] == names[3:]
    assert errors[names[3]] == [
        "Your code:42\nawait gatherCobblestones(bot, requiredCobblestones);\n gatherCobblestones is not defined\n"
    ]
    assert errors[names[4]][0].startswith('In your program code: throw new Error("No furnace nearby");\n')
    failed = json.loads((VOYAGER / "curriculum" / "failed_tasks.json").read_text())
    completed = json.loads((VOYAGER / "curriculum" / "completed_tasks.json").read_text())
    assert {"Craft a stone axe", "Mine 1 lapis ore"} <= set(failed)
    assert not {"Craft a stone axe", "Mine 1 lapis ore"} & set(completed)

    records, bad = voyager.convert_checkpoint(VOYAGER)
    assert bad == []
    for record in records:
        parse_record(record)
    ends = {r["task_id"]: (r["outcome"], r["reason"]) for r in records if r["kind"] == "episode_end"}
    assert ends == {
        "Craft a stone axe": ("failure", "in failed_tasks.json"),
        "Mine 1 lapis ore": ("failure", "in failed_tasks.json"),
    }
    ticks = _ticks(records)
    assert [Path(t["source"]["file"]).name for t in ticks] == names
    assert [(t["task_id"], t["error_class"], t["error"]) for t in ticks] == [
        ("Craft a stone axe", None, None),
        ("Craft a stone axe", None, None),
        ("Craft a stone axe", None, None),
        ("Craft a stone axe", "ReferenceError", "gatherCobblestones is not defined (line 42 of the code)"),
        ("Mine 1 lapis ore", "ExecutionError", "No furnace nearby (line 18 of the code)"),
        (
            "Mine 1 lapis ore",
            "ExecutionError",
            "direction must be a Vec3 only with value of -1, 0 or 1 (line 18 of the code)",
        ),
        ("Mine 1 lapis ore", "TypeError", "Cannot read properties of null (reading 'position') (line 29 of the code)"),
        (
            "Mine 1 lapis ore",
            "ExecutionError",
            "direction must be a Vec3 only with value of -1, 0 or 1 (line 18 of the code)",
        ),
    ]
    assert "Successfully crafted a stone axe!" in ticks[0]["observation"]
    assert "No furnace in inventory" in ticks[4]["observation"]


def _payloads(lines: list[dict[str, Any]], record: str, kind: str) -> list[dict[str, Any]]:
    return [line["payload"] for line in lines if line["type"] == record and line["payload"].get("type") == kind]


def test_codex_real_rollout_failed_test_bad_patch_timeout_sandbox_escalation_and_bad_arguments() -> None:
    """Codex CLI 0.171.0 (``codex exec``, model: the scripted double of record_codex.py): a test run exits 1, a patch
    does not apply, ``timeout 2 sleep 30`` exits 124, the workspace-write sandbox refuses a write to /usr, the
    escalation it asks for is rejected by the approval policy, a call's arguments are not JSON; then a patch that
    applies, the test passing and the answer."""
    lines = _lines(CODEX_FIX)
    meta = lines[0]["payload"]
    assert (meta["cli_version"], meta["originator"], meta["model_provider"]) == ("0.171.0", "codex_exec", "double")
    outputs = {
        p["call_id"]: p["output"]
        for kind in ("function_call_output", "custom_tool_call_output")
        for p in _payloads(lines, "response_item", kind)
    }
    assert (
        "Process exited with code 1\n" in outputs["call_0"] and "AssertionError: add(2, 3) == -1" in outputs["call_0"]
    )
    assert outputs["call_1"].startswith("apply_patch verification failed: Failed to find expected lines")
    assert "Process exited with code 124\n" in outputs["call_2"]
    assert "Read-only file system" in outputs["call_3"] and "Process exited with code 1\n" in outputs["call_3"]
    assert outputs["call_4"].startswith("approval policy is Never; reject command")
    assert outputs["call_5"].startswith("failed to parse function arguments")
    assert "Process exited with code 0\n" in outputs["call_7"]
    completed = [p["item"] for p in _payloads(lines, "event_msg", "item_completed")]
    exit_codes = {i["id"]: i.get("exit_code") for i in completed if i["type"] == "CommandExecution"}
    # this run wrote no item_completed for the sandboxed touch: its exit code is only in the output text
    assert exit_codes == {"call_0": 1, "call_2": 124, "call_7": 0}
    policy = next(line["payload"]["sandbox_policy"] for line in lines if line["type"] == "turn_context")
    assert policy["type"] == "workspace-write"

    records, bad = import_trace(CODEX_FIX)
    assert bad == []  # world_state and token_usage_record lines are known records of this version
    ticks = _ticks(records)
    assert [(t["action"]["tool"], t["outcome"], t["error_class"], t.get("exit_code")) for t in ticks] == [
        ("shell", "error", "AssertionError", 1),
        ("apply_patch", "error", "PatchFailed", None),
        ("shell", "timeout", "Timeout", 124),
        ("shell", "error", "SandboxDenied", 1),
        ("shell", "error", "ApprovalDenied", None),
        ("exec_command", "error", "SchemaViolation", None),
        ("apply_patch", "ok", None, 0),  # "Exit code: 0" in its output
        ("shell", "ok", None, 0),
        ("respond", "ok", None, None),
    ]
    assert ticks[0]["error"] == "exit code 1: AssertionError: add(2, 3) == -1"
    assert ticks[2]["action"]["args"]["command"] == "timeout 2 sleep 30"
    assert ticks[3]["error"] == "exit code 1: touch: cannot touch '/usr/calc-installed': Read-only file system"
    assert ticks[4]["action"]["args"]["sandbox_permissions"] == "require_escalated"
    assert ticks[5]["raw_arguments"] == '{"cmd": "python3 test_calc.py", yield_time_ms: 5000'
    start, end = records[0], records[-1]
    assert (start["task"], start["model"], start["cli_version"]) == (
        "test_calc.py fails; fix calc.py so that it passes.",
        "scripted-double",
        "0.171.0",
    )
    assert end["outcome"] == "success"
    chains = {c.failure_class: c for c in analyze_records(records).chains}
    assert chains["PatchFailed"].outcome == "recovered"


def test_codex_real_rollout_user_interrupts_a_running_command() -> None:
    """Codex CLI 0.171.0: Ctrl-C (SIGINT to ``codex exec``) while ``time.sleep(60)`` runs; the call's output is
    ``aborted by user`` and a ``turn_aborted`` event follows."""
    lines = _lines(CODEX_INTERRUPTED)
    (output,) = _payloads(lines, "response_item", "function_call_output")
    assert output["output"].endswith("\naborted by user")
    assert [p["reason"] for p in _payloads(lines, "event_msg", "turn_aborted")] == ["interrupted"]

    records, bad = import_trace(CODEX_INTERRUPTED)
    assert bad == []
    ((tick),) = _ticks(records)
    assert (tick["action"]["tool"], tick["error_class"], tick["error"]) == ("shell", "Interrupted", "aborted by user")
    assert (records[-1]["outcome"], records[-1]["reason"]) == ("aborted", "the last turn was aborted")


def test_codex_real_rollout_rate_limited_until_retries_run_out() -> None:
    """Codex CLI 0.171.0: every request gets HTTP 429; after its retries the turn ends with the error in
    ``task_complete`` (no ``error`` event), and the session has no step."""
    lines = _lines(CODEX_RATE_LIMITED)
    (complete,) = _payloads(lines, "event_msg", "task_complete")
    assert complete["error"]["message"] == "exceeded retry limit, last status: 429 Too Many Requests"
    assert not _payloads(lines, "event_msg", "error")

    records, bad = import_trace(CODEX_RATE_LIMITED)
    assert bad == []
    assert _ticks(records) == []
    end = records[-1]
    assert (end["outcome"], end["error_class"], end["reason"]) == (
        "death",
        "RateLimitError",
        "exceeded retry limit, last status: 429 Too Many Requests",
    )


def _spans(path: Path) -> list[dict[str, Any]]:
    """Every span of an OTLP JSON Lines file, with its attributes as a plain dict and its scope's name."""
    found = []
    for request in _lines(path):
        for resource in request["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    attrs = {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}
                    found.append({**span, "attrs": attrs, "scope": scope["scope"]["name"]})
    return found


# the failures both recordings hold, in order, per trace: (tool or model call, class, exit code)
_OTEL_FIX_RUN = [
    ("read_file", None, None),
    ("read_file", "FileNotFoundError", None),
    ("read_file", None, None),
    ("run_shell", "CalledProcessError", 1),
    ("run_shell", "Timeout", None),
    (None, "RateLimitError", None),
    ("write_file", None, None),
    ("run_shell", None, None),
]


def _otel_ticks(records: list[dict[str, Any]]) -> list[list[tuple[Any, ...]]]:
    by_episode: dict[str, list[tuple[Any, ...]]] = {}
    for t in _ticks(records):
        row = ((t["action"] or {}).get("tool"), t["error_class"], t.get("exit_code"))
        by_episode.setdefault(t["episode"], []).append(row)
    return list(by_episode.values())


def test_otel_genai_real_export_tool_errors_timeout_rate_limit_and_a_dead_run() -> None:
    """Spans of opentelemetry-instrumentation-openai-v2 2.4b0 and opentelemetry-util-genai 1.1b0, sent by the OTLP/HTTP
    exporter (record_otel_genai.py): a missing file, a test run exiting 1, a command past its 3 s limit, a 429 the
    agent waits out, the fix; then a second run whose model call gets HTTP 500 and the agent span fails."""
    spans = _spans(OTEL_GENAI)
    assert {s["scope"] for s in spans} == {"opentelemetry.util.genai.handler"}
    failed = [(s["name"], s["attrs"].get("error.type"), s["status"]["message"]) for s in spans if s["status"]]
    failed = [f for f in failed if f[2]]
    assert [(name, kind) for name, kind, _ in failed] == [
        ("execute_tool read_file", "FileNotFoundError"),
        ("execute_tool run_shell", "subprocess.CalledProcessError"),
        ("execute_tool run_shell", "subprocess.TimeoutExpired"),
        ("chat scripted-double", "<class 'openai.RateLimitError'>"),
        ("chat scripted-double", "<class 'openai.InternalServerError'>"),
        ("invoke_agent calc-fixer", "openai.InternalServerError"),
    ]
    assert failed[2][2] == "Command 'python3 -c 'import time; time.sleep(30)'' timed out after 3 seconds"
    assert all(s["status"]["code"] == 2 for s in spans if s["status"].get("message"))
    assert len({s["traceId"] for s in spans}) == 2 and all(len(s["traceId"]) == 32 for s in spans)

    records, bad = import_trace(OTEL_GENAI)
    assert bad == []
    fix, down = _otel_ticks(records)
    assert fix == _OTEL_FIX_RUN
    assert down == [("run_shell", None, None), (None, "InternalServerError", None)]
    ticks = _ticks(records)
    assert ticks[1]["error"].startswith("[Errno 2] No such file or directory: ") and ticks[1]["error"].endswith(
        "/tests/test_calc.py'"
    )
    assert ticks[3]["error"] == "Command 'python3 test_calc.py' returned non-zero exit status 1."
    assert ticks[4]["outcome"] == "timeout" and ticks[4]["action"]["args"] == {
        "command": "python3 -c 'import time; time.sleep(30)'"
    }
    assert ticks[7]["observation"] == "ok\n"
    starts = [r for r in records if r["kind"] == "episode_start"]
    ends = [r for r in records if r["kind"] == "episode_end"]
    assert [(s["task"], s["model"]) for s in starts] == [
        ("test_calc.py fails; fix calc.py.", "scripted-double"),
        ("list the project files.", "scripted-double"),
    ]
    assert [(e["outcome"], e["error_class"]) for e in ends] == [("success", None), ("death", "InternalServerError")]
    assert ends[1]["reason"] == "Error code: 500 - The server had an error (scripted double)"


def test_openinference_real_export_same_run_read_from_span_kinds() -> None:
    """The same agent loop recorded with OpenInference (openinference-instrumentation-openai for the model calls,
    OITracer for the AGENT and TOOL spans): no gen_ai.* attributes, failures as exception events."""
    spans = _spans(OTEL_OPENINFERENCE)
    assert not any(key.startswith("gen_ai.") for s in spans for key in s["attrs"])
    kinds = [s["attrs"]["openinference.span.kind"] for s in spans]
    assert kinds.count("TOOL") == 8 and kinds.count("AGENT") == 2 and kinds.count("LLM") == 10
    exceptions = [
        next(a["value"]["stringValue"] for a in e["attributes"] if a["key"] == "exception.type")
        for s in spans
        for e in s.get("events", [])
        if e["name"] == "exception"
    ]
    # in file order, which groups spans by instrumentation scope (model calls first)
    assert sorted(exceptions) == [
        "FileNotFoundError",
        "openai.InternalServerError",
        "openai.InternalServerError",
        "openai.RateLimitError",
        "subprocess.CalledProcessError",
        "subprocess.TimeoutExpired",
    ]

    records, bad = import_trace(OTEL_OPENINFERENCE)
    assert bad == []
    fix, down = _otel_ticks(records)
    assert fix == _OTEL_FIX_RUN
    assert down == [("run_shell", None, None), (None, "InternalServerError", None)]
    ticks = _ticks(records)
    assert ticks[4]["error"] == (
        "TimeoutExpired: Command 'python3 -c 'import time; time.sleep(30)'' timed out after 3 seconds"
    )
    starts = [r for r in records if r["kind"] == "episode_start"]
    assert [(s["task"], s["model"]) for s in starts] == [
        ("test_calc.py fails; fix calc.py.", "scripted-double"),
        ("list the project files.", "scripted-double"),
    ]
    assert records[-1]["outcome"] == "death" and records[-1]["error_class"] == "InternalServerError"


_UNKNOWN_LINES = {
    "claude-code": {"type": "holographic_projection", "sessionId": "55604662-cf2a-4331-851a-ec234028f8ca"},
    "codex": {"timestamp": "2026-12-01T03:38:15.000Z", "type": "holographic_projection", "payload": {}},
    "otel-genai": {"resourceLogs": [{"scopeLogs": []}]},
}


@pytest.mark.parametrize(
    ("path", "fmt", "reason"),
    [
        (CLAUDE_REJECTED, "claude-code", "unknown record type 'holographic_projection'"),
        (CODEX_FIX, "codex", "unknown record type 'holographic_projection'"),
        (OTEL_GENAI, "otel-genai", "not an OTLP export request (keys: resourceLogs)"),
    ],
)
def test_real_recording_with_an_unknown_record_and_a_torn_last_line(
    tmp_path: Path, path: Path, fmt: str, reason: str
) -> None:
    """A record of a type the importer does not know, after line 3, and the last line cut in half (a write torn by a
    crash): both reported with their line, everything else imported as from the whole file."""
    whole = path.read_text().splitlines()
    copy = tmp_path / path.name
    unknown = json.dumps(_UNKNOWN_LINES[fmt])
    copy.write_text("\n".join([*whole[:3], unknown, *whole[3:]]) + "\n" + whole[-1][: len(whole[-1]) // 2])
    records, bad = import_trace(copy, fmt)
    assert [b.line for b in bad] == [4, len(whole) + 2]
    assert reason in bad[0].reason and bad[0].file == str(copy)
    assert bad[1].reason.startswith("torn last line (no newline at end of file)")
    original, _ = import_trace(path)
    kept = [(t["action"], t["error_class"]) for t in _ticks(records)]
    assert kept == [(t["action"], t["error_class"]) for t in _ticks(original)][: len(kept)]
    assert len(kept) >= len(_ticks(original)) - 1  # at most the torn line's tick is lost


def test_voyager_real_events_with_an_unknown_event_type_and_a_torn_file(tmp_path: Path) -> None:
    """Voyager writes each events file as one JSON line: an event of an unknown type is reported and skipped, a file
    cut short is reported and the rest of the checkpoint imported."""
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(VOYAGER, checkpoint)
    events = sorted((checkpoint / "events").iterdir())
    first = json.loads(events[0].read_text())
    events[0].write_text(json.dumps([first[0], ["holographic_projection", {"x": 1}], *first[1:]]))
    text = events[-1].read_text()
    events[-1].write_text(text[: len(text) // 2])
    records, bad = voyager.convert_checkpoint(checkpoint)
    assert [(Path(b.file).name, b.line) for b in bad] == [(events[0].name, 1), (events[-1].name, 1)]
    assert bad[0].reason == "/1: unknown event type 'holographic_projection'; skipped"
    assert bad[1].reason.startswith("invalid JSON at column ")
    original, _ = voyager.convert_checkpoint(VOYAGER)
    assert [t["error_class"] for t in _ticks(records)] == [t["error_class"] for t in _ticks(original)][:-1]
