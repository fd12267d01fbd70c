"""Importers against real traces written by other agents (the files in fixtures/foreign-traces, unmodified).

Each test states what the file really contains, checked by reading the file independently in the test, and then
asserts that import + analysis find exactly that.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pipeline.traces.analysis import analyze, analyze_records
from pipeline.traces.importers import FORMATS, UnknownFormat, detect_format, import_trace
from pipeline.traces.schema import parse_record

FIXTURES = Path("/work/shared/fixtures/foreign-traces")
SWE = FIXTURES / "swe-agent" / "pydicom__pydicom-1458.traj"
OPENHANDS = FIXTURES / "openhands" / "resolver_mock_output.jsonl"
TAU_FAIL = FIXTURES / "tau-bench" / "gpt-4o-airline_task13_trial0_fail_thrash.json"
TAU_OK = FIXTURES / "tau-bench" / "gpt-4o-airline_task13_trial2_success.json"
INSPECT = FIXTURES / "inspect_ai" / "log_tool_call_error.json"
MINI = FIXTURES / "mini-swe-agent" / "github_issue.traj.json"

pytestmark = pytest.mark.skipif(not FIXTURES.exists(), reason="foreign trace fixtures not present")


def _ticks(records: list[dict[str, Any]], episode: str | None = None) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == "tick" and (episode is None or r["episode"] == episode)]


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        (SWE, "swe-agent"),
        (OPENHANDS, "openhands"),
        (TAU_FAIL, "tau-bench"),
        (TAU_OK, "tau-bench"),
        (INSPECT, "inspect-ai"),
        (MINI, "mini-swe-agent"),
    ],
)
def test_detects_and_imports_valid_canonical_records_with_provenance(path: Path, fmt: str) -> None:
    assert detect_format(path) == fmt
    records, bad = import_trace(path)
    assert bad == []
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "episode_start" and kinds[-1] == "episode_end"
    for record in records:
        parse_record(record)  # raises if not canonical
        assert record["source"]["format"] == fmt
        assert record["source"]["file"] == str(path)
        assert record["source"]["sha256"] == sha
    for episode in {r["episode"] for r in records}:
        numbers = [r["tick"] for r in _ticks(records, episode)]
        assert numbers == list(range(len(numbers)))


def test_swe_agent_three_failed_edits_then_recovery() -> None:
    doc = json.loads(SWE.read_text())
    steps = doc["trajectory"]
    syntax = [i for i, s in enumerate(steps) if "introduced new syntax error" in s["observation"]]
    tracebacks = [i for i, s in enumerate(steps) if s["observation"].startswith("Traceback")]
    assert syntax == [5, 6, 7] and all(steps[i]["action"].startswith("edit ") for i in syntax)
    assert steps[8]["action"].startswith("edit ") and "syntax error" not in steps[8]["observation"]
    assert tracebacks == [2] and steps[9]["action"].strip() == steps[2]["action"].strip() == "python reproduce_bug.py"

    records, _ = import_trace(SWE)
    ticks = _ticks(records)
    assert len(ticks) == len(steps) == 12
    assert [t["tick"] for t in ticks if t["outcome"] != "ok"] == [2, 5, 6, 7]
    assert [t["error_class"] for t in ticks if t["error_class"]] == [
        "AttributeError",
        "SyntaxError",
        "SyntaxError",
        "SyntaxError",
    ]
    assert ticks[5]["error"] == "proposed edit introduced a syntax error: E999 SyntaxError: unmatched ']'"
    assert (
        ticks[6]["error"]
        == ticks[7]["error"]
        == "proposed edit introduced a syntax error: E999 SyntaxError: unmatched ')'"
    )
    assert records[-1]["outcome"] == "success" and records[-1]["reason"] == "submitted"

    # The prompt of step k is the chat history before the k-th assistant message.
    history = doc["history"]
    first_assistant = next(i for i, m in enumerate(history) if m["role"] == "assistant")
    assert ticks[0]["context_chars"] == sum(len(m["content"]) for m in history[:first_assistant])

    analysis = analyze(SWE)
    edit_chain = next(c for c in analysis.chains if c.failure_class == "SyntaxError")
    assert (edit_chain.ticks, edit_chain.attempts, edit_chain.outcome, edit_chain.ticks_to_recover) == (
        [5, 6, 7, 8],
        3,
        "recovered",
        3,
    )
    run_chain = next(c for c in analysis.chains if c.failure_class == "AttributeError")
    assert (run_chain.ticks, run_chain.outcome, run_chain.ticks_to_recover) == ([2, 9], "recovered", 7)
    assert [(t.action, t.error_class, t.count, t.start_tick, t.end_tick) for t in analysis.thrash] == [
        ("bash:edit", "SyntaxError", 3, 5, 7)
    ]
    assert analysis.mttr_ticks == 5.0  # (3 + 7) / 2
    assert analysis.mttr_seconds is None  # the file has no timestamps, so no seconds are invented
    assert analysis.deaths == []
    assert analysis.context.bounded is False  # SWE-agent sends the whole history: it grows every step


@pytest.mark.parametrize(
    ("status", "outcome", "reason", "error_class"),
    [
        ("submitted (exit_cost)", "timeout", "autosubmitted after exit_cost", "BudgetExhausted"),
        ("exit_context", "death", "exit_context", "ContextOverflow"),
        ("exit_forfeit", "failure", "exit_forfeit", None),
    ],
)
def test_swe_agent_exit_statuses_end_episodes(
    tmp_path: Path, status: str, outcome: str, reason: str, error_class: str | None
) -> None:
    doc = json.loads(SWE.read_text())
    doc["info"]["exit_status"] = status
    path = tmp_path / "run.traj"
    path.write_text(json.dumps(doc))
    records, _ = import_trace(path)
    end = records[-1]
    assert (end["outcome"], end["reason"], end["error_class"]) == (outcome, reason, error_class)
    deaths = analyze(path).deaths
    if outcome == "death":
        (death,) = deaths
        assert (death.tick, death.error_class, death.reason) == (11, "ContextOverflow", "exit_context")
        assert death.last_ticks == list(range(4, 12))
    else:
        assert deaths == []


def test_openhands_eight_syntax_errors_in_a_row_then_recovery() -> None:
    lines = OPENHANDS.read_text().splitlines()
    assert len(lines) == 2
    second = json.loads(lines[1])
    contents = [str(e.get("content", "")) for e in second["history"]]
    refused = [i for i, c in enumerate(contents) if "proposed edit has introduced new syntax error" in c]
    assert refused == [10, 12, 14, 16, 18, 20, 22, 24]  # eight observations, each answering the edit before it
    no_match = [i for i, c in enumerate(contents) if c.startswith("[No exact match found")]
    assert no_match == [28, 32, 34]

    records, _ = import_trace(OPENHANDS)
    episodes = sorted({r["episode"] for r in records})
    assert episodes == ["neubig/pr-viewer#1", "neubig/pr-viewer#5"]
    assert all(r["source"]["line"] in (1, 2) for r in records)
    assert not [t for t in _ticks(records, "neubig/pr-viewer#5") if t["outcome"] != "ok"]
    ticks = _ticks(records, "neubig/pr-viewer#1")
    # one tick per agent action; the first event is the user's task, not a tick
    assert second["history"][0]["action"] == "message"
    assert len(ticks) == sum(1 for e in second["history"][1:] if "action" in e) == 22
    assert records[0]["task"] == json.loads(lines[0])["instruction"]
    assert ticks[0]["action"] == {"tool": "bash", "args": {"command": "ls -R /workspace"}}
    assert ticks[0]["context_chars"] == len(second["history"][0]["content"])
    failing = [t for t in ticks if t["outcome"] != "ok"]
    assert [t["error_class"] for t in failing] == ["SyntaxError"] * 8 + ["NotFound"] * 3
    syntax_ticks = [t["tick"] for t in failing if t["error_class"] == "SyntaxError"]
    assert syntax_ticks == list(range(syntax_ticks[0], syntax_ticks[0] + 8))  # consecutive
    after = ticks[syntax_ticks[-1] + 1]
    assert after["outcome"] == "ok" and "open_file" in after["action"]["args"]["code"]
    ends = {r["episode"]: r for r in records if r["kind"] == "episode_end"}
    assert ends["neubig/pr-viewer#1"]["solved"] is True and ends["neubig/pr-viewer#1"]["outcome"] == "success"

    analysis = analyze(OPENHANDS)
    assert analysis.episodes == 2
    thrash = {(t.error_class, t.count) for t in analysis.thrash}
    assert thrash == {("SyntaxError", 8), ("NotFound", 3)}
    assert all(t.action == "ipython:edit_file_by_replace" for t in analysis.thrash)
    (chain,) = analysis.chains
    assert chain.failure_class == "SyntaxError" and chain.outcome == "recovered"
    assert chain.start_tick == syntax_ticks[0]
    # the edit verb succeeds again at the first edit whose result is not a refusal
    first_good_edit = next(
        t["tick"]
        for t in ticks
        if t["tick"] > syntax_ticks[0]
        and t["outcome"] == "ok"
        and "edit_file_by_replace" in t["action"]["args"]["code"]
    )
    assert chain.end_tick == first_good_edit
    reasons = [d.reason for d in analysis.deadlocks]
    assert "no progress for 8 ticks" in reasons
    assert any(r.startswith("same NotFound repeated 3 times") for r in reasons)


def test_tau_bench_the_same_failing_tool_call_five_times() -> None:
    (result,) = json.loads(TAU_FAIL.read_text())
    traj = result["traj"]
    errors = [m["content"] for m in traj if m["role"] == "tool" and m["content"].startswith("Error:")]
    assert errors.count("Error: flight HAT030 not available on date 2024-05-13") == 5
    assert len(errors) == 6 and result["reward"] == 0.0
    calls = [c["function"]["name"] for m in traj if m["role"] == "assistant" for c in (m.get("tool_calls") or [])]
    assert calls.count("update_reservation_flights") == 7  # six failed, the seventh went through

    records, _ = import_trace(TAU_FAIL)
    ticks = _ticks(records)
    # a tick per tool call, and one per text answer to the user
    assert len(ticks) == sum(len(m.get("tool_calls") or []) or 1 for m in traj if m["role"] == "assistant") == 28
    failing = [t for t in ticks if t["outcome"] != "ok"]
    assert [t["action"]["tool"] for t in failing] == ["update_reservation_flights"] * 6
    assert [t["error"] for t in failing] == errors
    assert records[-1]["outcome"] == "failure" and records[-1]["solved"] is False

    analysis = analyze(TAU_FAIL)
    (thrash,) = analysis.thrash
    assert (thrash.action, thrash.error_class, thrash.count) == ("update_reservation_flights", "ToolError", 6)
    (deadlock,) = analysis.deadlocks
    assert deadlock.reason == (
        "same ToolError repeated 5 times on update_reservation_flights: "
        "Error: flight HAT030 not available on date 2024-05-13"
    )
    (chain,) = analysis.chains
    last_update = [t["tick"] for t in ticks if t["action"]["tool"] == "update_reservation_flights"][-1]
    assert chain.ticks == [t["tick"] for t in failing] + [last_update]
    assert chain.outcome == "recovered" and chain.attempts == 6
    assert analysis.error_classes == {"ToolError": 6}


def test_tau_bench_success_trial_leaves_its_failing_call_unrecovered() -> None:
    (result,) = json.loads(TAU_OK.read_text())
    errors = [m for m in result["traj"] if m["role"] == "tool" and m["content"].startswith("Error:")]
    assert len(errors) == 4 and result["reward"] == 1.0
    analysis = analyze(TAU_OK)
    (chain,) = analysis.chains
    assert chain.outcome == "open" and chain.attempts == 3  # never succeeded; the agent handed over instead
    records, _ = import_trace(TAU_OK)
    assert records[-1]["outcome"] == "success" and records[-1]["solved"] is True
    assert _ticks(records)[-1]["action"]["tool"] == "transfer_to_human_agents"


def test_mini_swe_agent_first_command_fails_then_recovers() -> None:
    messages = json.loads(MINI.read_text())
    assistants = [m for m in messages if m["role"] == "assistant"]
    assert messages[3]["content"].startswith("<returncode>1</returncode>")
    assert "No such file or directory" in messages[3]["content"]

    records, _ = import_trace(MINI)
    ticks = _ticks(records)
    assert len(ticks) == len(assistants) == 10
    assert [(t["tick"], t["error_class"]) for t in ticks if t["outcome"] != "ok"] == [
        (0, "NotFound"),
        (7, "ZeroDivisionError"),
    ]
    assert ticks[0]["action"]["args"]["command"].startswith("cat ")
    assert records[-1]["outcome"] == "success" and records[-1]["reason"] == "submitted"
    analysis = analyze(MINI)
    first = analysis.chains[0]
    assert (first.failure_class, first.ticks, first.outcome) == ("NotFound", [0, 3], "recovered")
    assert ticks[3]["action"]["args"]["command"] == "cat tests/missing_colon.py"


@pytest.mark.parametrize(("status", "outcome"), [("Submitted", "success"), ("LimitsExceeded", "timeout")])
def test_mini_swe_agent_later_layout_with_exit_status(tmp_path: Path, status: str, outcome: str) -> None:
    messages = json.loads(MINI.read_text())
    doc = {"info": {"exit_status": status}, "messages": messages, "trajectory_format": "mini-swe-agent-1"}
    path = tmp_path / "run.traj.json"
    path.write_text(json.dumps(doc))
    assert detect_format(path) == "mini-swe-agent"
    records, _ = import_trace(path)
    flat, _ = import_trace(MINI)
    assert [t["error_class"] for t in _ticks(records)] == [t["error_class"] for t in _ticks(flat)]
    assert (records[-1]["outcome"], records[-1]["reason"]) == (outcome, status)
    assert records[1]["source"]["pointer"] == "/messages/2"


INSPECT_CLASSES = [
    "SchemaViolation",  # parsing
    "Timeout",
    "SchemaViolation",
    "UnicodeDecodeError",
    "PermissionDenied",
    "NotFound",  # file_not_found
    "IsADirectory",
    "LimitExceeded",
    "ApprovalDenied",
    "ToolError",  # unknown
    "ContextOverflow",  # output_limit
]


def test_inspect_ai_json_log_one_tick_per_tool_error() -> None:
    doc = json.loads(INSPECT.read_text())
    (sample,) = doc["samples"]
    types = [m["error"]["type"] for m in sample["messages"]]
    assert len(types) == 11
    records, _ = import_trace(INSPECT)
    ticks = _ticks(records)
    assert [t["error_class"] for t in ticks] == INSPECT_CLASSES
    assert [t["tool_error_type"] for t in ticks] == types
    assert ticks[1]["outcome"] == "timeout"
    assert ticks[10]["error"] == "output_limit: The tool output limit of 10 MiB was exceeded."
    assert records[0]["episode"] == "1-epoch-4"
    analysis = analyze(INSPECT)
    assert sum(analysis.error_classes.values()) == 11
    assert [d.reason for d in analysis.deadlocks] == ["no progress for 11 ticks"]


def _eval_zip(path: Path, doc: dict[str, Any], *, broken_sample: bool = False) -> None:
    """An inspect_ai ``.eval`` archive holding the same content as a JSON log, laid out as inspect_ai writes it."""
    header = {k: v for k, v in doc.items() if k != "samples"}
    start = {"version": doc["version"], "eval": doc["eval"], "plan": doc["plan"]}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("_journal/start.json", json.dumps(start))
        summaries = []
        for sample in doc["samples"]:
            name = f"samples/{sample['id']}_epoch_{sample['epoch']}.json"
            archive.writestr(name, json.dumps(sample, indent=2))
            summaries.append({k: sample[k] for k in ("id", "epoch", "input", "target")})
        if broken_sample:
            archive.writestr("samples/2_epoch_1.json", '{\n  "id": 2,\n  "epoch": 1,\n  "messages": [\n')
        archive.writestr("_journal/summaries/1.json", json.dumps(summaries))
        archive.writestr("summaries.json", json.dumps(summaries))
        archive.writestr("header.json", json.dumps(header))


def test_inspect_ai_eval_zip_gives_the_same_records_as_the_json_log(tmp_path: Path) -> None:
    doc = json.loads(INSPECT.read_text())
    eval_path = tmp_path / "log_tool_call_error.eval"
    _eval_zip(eval_path, doc)
    assert detect_format(eval_path) == "inspect-ai"
    from_zip, bad = import_trace(eval_path)
    from_json, _ = import_trace(INSPECT)
    assert bad == []

    def comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in ("source", "run_id", "ts")} for r in records]

    assert comparable(from_zip) == comparable(from_json)
    assert from_zip[1]["source"]["member"] == "samples/1_epoch_4.json"
    assert from_zip[1]["source"]["pointer"] == "/messages/0"
    assert from_json[1]["source"]["pointer"] == "/samples/0/messages/0"


def test_inspect_ai_eval_zip_with_a_damaged_sample_reports_it_and_keeps_the_rest(tmp_path: Path) -> None:
    doc = json.loads(INSPECT.read_text())
    eval_path = tmp_path / "damaged.eval"
    _eval_zip(eval_path, doc, broken_sample=True)
    records, bad = import_trace(eval_path)
    assert len(_ticks(records)) == 11
    (problem,) = bad
    assert problem.file == f"{eval_path}!samples/2_epoch_1.json"
    assert problem.line == 5 and "invalid JSON" in problem.reason


def test_imported_records_round_trip_through_canonical_jsonl(tmp_path: Path) -> None:
    records, _ = import_trace(TAU_FAIL)
    out = tmp_path / "tau.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert detect_format(out) == "phasef"
    direct = analyze(TAU_FAIL)
    again = analyze(out)
    assert again.chains == direct.chains and again.thrash == direct.thrash and again.deadlocks == direct.deadlocks
    assert analyze_records(records).chains == direct.chains


def test_formats_and_detection_errors(tmp_path: Path) -> None:
    assert FORMATS == (
        "phasef", "swe-agent", "openhands", "mini-swe-agent", "tau-bench", "inspect-ai",
        "claude-code", "codex", "aider", "voyager", "otel-genai",
    )  # fmt: skip
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(UnknownFormat, match="none of the known formats"):
        detect_format(other)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "trajectory": [\n    {"action": "ls"\n')
    with pytest.raises(UnknownFormat, match=r"broken\.json:4: neither canonical JSONL nor a valid JSON document"):
        detect_format(broken)
    with pytest.raises(UnknownFormat, match="is not a swe-agent file"):
        import_trace(TAU_FAIL, "swe-agent")
    with pytest.raises(ValueError, match="unknown format"):
        import_trace(TAU_FAIL, "langchain")
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "missing.jsonl")
    with pytest.raises(IsADirectoryError):
        detect_format(tmp_path)
    not_eval = tmp_path / "x.zip"
    with zipfile.ZipFile(not_eval, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(UnknownFormat, match=r"not an inspect_ai \.eval"):
        detect_format(not_eval)


OPENHANDS_EVENTS = [
    {"id": 0, "timestamp": "2025-03-07T17:45:00Z", "source": "user", "action": "message",
     "args": {"content": "fix the bug in app.py"}},
    {"id": 1, "timestamp": "2025-03-07T17:45:05Z", "source": "agent", "action": "run",
     "args": {"command": "python -m pytest -x", "thought": "reproduce first"}},
    {"id": 2, "timestamp": "2025-03-07T17:45:08Z", "source": "agent", "observation": "run", "cause": 1,
     "content": "1 failed", "extras": {"command": "python -m pytest -x", "metadata": {"exit_code": 1}}},
    {"id": 3, "timestamp": "2025-03-07T17:45:12Z", "source": "agent", "action": "edit",
     "args": {"path": "app.py", "command": "str_replace", "old_str": "a", "new_str": "b"}},
    {"id": 4, "timestamp": "2025-03-07T17:45:13Z", "source": "agent", "observation": "edit", "cause": 3,
     "content": "The file app.py has been edited.", "extras": {"path": "app.py"}},
    {"id": 5, "timestamp": "2025-03-07T17:45:20Z", "source": "agent", "action": "run",
     "args": {"command": "python -m pytest -x"}},
    {"id": 6, "timestamp": "2025-03-07T17:45:31Z", "source": "agent", "observation": "run", "cause": 5,
     "content": "3 passed", "extras": {"metadata": {"exit_code": 0}}},
    {"id": 7, "timestamp": "2025-03-07T17:45:33Z", "source": "agent", "action": "finish", "args": {"outputs": {}}},
]  # fmt: skip


@pytest.mark.parametrize("layout", ["json", "jsonl"])
def test_openhands_event_stream_with_ids_and_timestamps(tmp_path: Path, layout: str) -> None:
    """The current event layout (``args``, ``cause``, ``extras.metadata.exit_code``, ISO timestamps)."""
    path = tmp_path / f"events.{layout}"
    if layout == "json":
        path.write_text(json.dumps(OPENHANDS_EVENTS, indent=2))
    else:
        path.write_text("".join(json.dumps(e) + "\n" for e in OPENHANDS_EVENTS))
    assert detect_format(path) == "openhands"
    records, bad = import_trace(path)
    assert bad == []
    ticks = _ticks(records)
    assert [t["action"]["tool"] for t in ticks] == ["bash", "edit", "bash", "finish"]
    assert ticks[1]["action"]["args"] == {"path": "app.py", "command": "str_replace", "old_str": "a", "new_str": "b"}
    assert [t["outcome"] for t in ticks] == ["error", "ok", "ok", "ok"]
    assert ticks[0]["error_class"] == "ToolError" and ticks[0]["raw_output"] == "reproduce first"
    assert records[0]["task"] == "fix the bug in app.py"
    assert records[-1]["outcome"] == "success"
    if layout == "jsonl":
        assert [t["source"]["line"] for t in ticks] == [2, 4, 6, 8]
    analysis = analyze(path)
    (chain,) = analysis.chains
    assert (chain.ticks, chain.outcome, chain.seconds_to_recover) == ([0, 2], "recovered", 15.0)
    assert analysis.mttr_seconds == 15.0
