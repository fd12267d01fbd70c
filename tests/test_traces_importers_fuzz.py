"""Property tests of the agent-session importers: whatever the bytes, a result or a clear error, never a traceback.

Outside input is anything: a session file cut off mid-write, a file of another format opened with ``--from``, a line
of JSON whose fields have the wrong types. For each importer, any bytes and any JSON lines shaped like its records
give records that are valid canonical records plus bad lines naming the file and a line inside it, or an
``UnknownFormat`` / ``ValueError`` that names the file.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.traces.importers import UnknownFormat, import_trace, voyager
from pipeline.traces.importers.agents import FORMATS as AGENT_FORMATS
from pipeline.traces.schema import parse_record

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# No per-example deadline (the machine is shared and timings wander); an importer that loops on some input fails the
# test at this timeout instead of hanging the suite.
pytestmark = pytest.mark.timeout(300)

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _check(path: Path, fmt: str | None) -> None:
    """Import ``path``; any outcome but a valid result or a clear error fails the test."""
    try:
        records, bad = import_trace(path, fmt)
    except (UnknownFormat, ValueError) as exc:
        assert str(path) in str(exc) or "format" in str(exc)
        return
    except OSError as exc:  # a folder or unreadable file; the message names it
        assert str(path) in str(exc) or exc.filename == str(path)
        return
    lines = max(1, path.read_bytes().count(b"\n") + 1)
    for record in records:
        parse_record(record)
    for problem in bad:
        assert problem.file.startswith(str(path)) or Path(problem.file).parent == path.parent
        assert 0 <= problem.line <= lines, (problem, lines)
        assert problem.reason


def _write(data: bytes, name: str) -> tuple[tempfile.TemporaryDirectory[str], Path]:
    folder = tempfile.TemporaryDirectory()
    path = Path(folder.name) / name
    path.write_bytes(data)
    return folder, path


@SETTINGS
@given(data=st.binary(max_size=2000), fmt=st.sampled_from([None, *AGENT_FORMATS]))
def test_any_bytes_give_a_result_or_a_clear_error(data: bytes, fmt: str | None) -> None:
    folder, path = _write(data, "trace.jsonl")
    with folder:
        _check(path, fmt)


def _claude_line(value: Any, kind: str) -> dict[str, Any]:
    return {"type": kind, "sessionId": "s", "uuid": "u", "parentUuid": None, "message": value, "timestamp": value}


claude_lines = st.lists(
    st.builds(_claude_line, json_values, st.sampled_from(["user", "assistant", "system", "summary", "odd"]))
    | st.builds(
        lambda content, is_error, tid, name, inp: {
            "type": "user" if is_error is not None else "assistant",
            "sessionId": "s",
            "uuid": "u",
            "message": {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tid, "content": content, "is_error": is_error}
                    if is_error is not None
                    else {"type": "tool_use", "id": tid, "name": name, "input": inp}
                ],
            },
        },
        json_values,
        st.none() | st.booleans(),
        st.sampled_from(["t1", "t2", 3, None]),
        json_values,
        json_values,
    ),
    max_size=12,
)


@SETTINGS
@given(lines=claude_lines)
def test_any_claude_code_lines(lines: list[dict[str, Any]]) -> None:
    data = "\n".join(json.dumps(line) for line in lines).encode()
    folder, path = _write(data, "session.jsonl")
    with folder:
        _check(path, "claude-code")
        _check(path, None)


codex_lines = st.lists(
    st.builds(
        lambda kind, payload, ts: {"timestamp": ts, "type": kind, "payload": payload},
        st.sampled_from(["session_meta", "turn_context", "response_item", "event_msg", "compacted", "odd"]),
        json_values
        | st.builds(
            lambda t, call, out, args, code: {
                "type": t,
                "call_id": call,
                "output": out,
                "arguments": args,
                "exit_code": code,
                "success": code == 0,
                "name": "shell",
            },
            st.sampled_from(
                [
                    "function_call",
                    "function_call_output",
                    "custom_tool_call",
                    "custom_tool_call_output",
                    "local_shell_call",
                    "message",
                    "exec_command_end",
                    "patch_apply_end",
                    "turn_aborted",
                    "error",
                ]
            ),
            st.sampled_from(["c1", "c2", None, 5]),
            json_values,
            json_values,
            json_values,
        ),
        json_values,
    ),
    max_size=12,
)


@SETTINGS
@given(lines=codex_lines)
def test_any_codex_lines(lines: list[dict[str, Any]]) -> None:
    data = "\n".join(json.dumps(line) for line in lines).encode()
    folder, path = _write(data, "rollout.jsonl")
    with folder:
        _check(path, "codex")
        _check(path, None)


aider_lines = st.lists(
    st.one_of(
        st.builds(lambda t: f"# aider chat started at {t}", st.text(max_size=25)),
        st.builds(lambda t: f"#### {t}", st.text(max_size=40)),
        st.builds(lambda t: f"> {t}  ", st.text(max_size=40)),
        st.sampled_from(
            [
                "> The LLM did not conform to the edit format.",
                "> # 1 SEARCH/REPLACE block failed to match!",
                "> ^C again to exit",
                "> ^C KeyboardInterrupt",
                "> Unexpected error: litellm.APIConnectionError: boom",
                "> Only 3 reflections allowed, stopping.",
                "",
            ]
        ),
        st.text(max_size=60),
    ),
    max_size=30,
)


@SETTINGS
@given(lines=aider_lines)
def test_any_aider_history(lines: list[str]) -> None:
    data = "\n".join(lines).encode("utf-8", errors="surrogatepass")
    folder, path = _write(data, ".aider.chat.history.md")
    with folder:
        _check(path, "aider")
        _check(path, None)


def _span(trace: Any, attrs: Any, status: Any, start: Any, end: Any) -> dict[str, Any]:
    return {
        "traceId": trace,
        "spanId": "a",
        "name": "execute_tool x",
        "attributes": attrs,
        "status": status,
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
    }


otel_docs = st.builds(
    lambda spans, resource: {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]},
    st.lists(
        st.builds(
            _span,
            st.sampled_from(["t1", "t2", 7, None]),
            json_values
            | st.lists(
                st.builds(
                    lambda k, v: {"key": k, "value": v},
                    st.sampled_from(
                        ["gen_ai.operation.name", "gen_ai.tool.name", "error.type", "gen_ai.tool.call.arguments"]
                    ),
                    json_values,
                ),
                max_size=4,
            ),
            json_values | st.builds(lambda c: {"code": c}, st.sampled_from([0, 1, 2, "STATUS_CODE_ERROR", None])),
            json_values,
            json_values,
        )
        | json_values,
        max_size=6,
    ),
    json_values,
)


@SETTINGS
@given(doc=otel_docs | json_values, as_lines=st.booleans())
def test_any_otlp_json(doc: Any, as_lines: bool) -> None:
    data = (json.dumps(doc) + "\n" + json.dumps(doc)) if as_lines else json.dumps(doc, indent=1)
    folder, path = _write(data.encode(), "spans.json")
    with folder:
        _check(path, "otel-genai")
        _check(path, None)


@SETTINGS
@given(
    files=st.dictionaries(
        st.sampled_from(["Mine_1_log_20230101_000000", "Mine_1_log_20230101_000100", "Craft_x_20230101_000200", "x"]),
        st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), json_values),
        max_size=4,
    ),
    completed=st.binary(max_size=60) | st.builds(lambda v: json.dumps(v).encode(), json_values),
)
def test_any_voyager_checkpoint(files: dict[str, bytes], completed: bytes) -> None:
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        (root / "events").mkdir()
        (root / "curriculum").mkdir()
        (root / "curriculum" / "completed_tasks.json").write_bytes(completed)
        for file, data in files.items():
            (root / "events" / file).write_bytes(data)
        records, bad = voyager.convert_checkpoint(root)
        for record in records:
            parse_record(record)
        for problem in bad:
            assert Path(problem.file).parent in (root / "events", root / "curriculum") and problem.reason
        for file in files:
            _check(root / "events" / file, None)


@SETTINGS
@given(
    files=st.dictionaries(
        st.sampled_from(
            ["a.jsonl", "b.json", "c.traj", "d.eval", ".aider.chat.history.md", "e.md", "sub/f.jsonl", "x/events/g"]
        ),
        st.binary(max_size=300) | st.builds(lambda v: json.dumps(v).encode(), json_values),
        max_size=5,
    ),
    checkpoint=st.booleans(),
)
def test_any_folder_imports_or_reports_every_file(files: dict[str, bytes], checkpoint: bool) -> None:
    import io

    from pipeline.traces.importers.folders import import_folder

    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        for file, data in files.items():
            (root / file).parent.mkdir(parents=True, exist_ok=True)
            (root / file).write_bytes(data)
        if checkpoint:
            (root / "x" / "events").mkdir(parents=True, exist_ok=True)
            (root / "x" / "curriculum").mkdir(parents=True, exist_ok=True)
        out = io.BytesIO()
        summary = import_folder(root, out, jobs=1)
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert len(lines) == summary.records
        for record in lines:
            parse_record(record)
        for problem in summary.skipped + summary.bad_lines:
            assert problem.file.startswith(name) and problem.reason
