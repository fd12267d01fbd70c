"""Episode fan-out of the ``api`` step: ``shards = N`` splits the episodes over N instances (local, or on a loopback
SSH host), and the merged trace and report equal an unsharded run's with the same seeds, times aside.

The endpoint is a real OpenAI-compatible HTTP server on loopback whose reply is a pure function of the request
(prompt and seed), so that two runs of the same workload see the same model: what differs is only how the
episodes were spread.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.bench.shards import ShardMergeError, merge
from tests.remote_helpers import loopback_host
from tests.spine_helpers import ROOT, has_event, journal_events, phasef, spawn, wait_for, write_plan
from tests.test_remote_executor import _events, _run

REPLIES = (
    '{"act":"list","arg":""}',
    '{"act":"read","arg":"README.md"}',
    '{"act":"check","arg":""}',
    '{"act":"search","arg":"def "}',
    "sure, here is the action: list",
    '{"act":"answer","arg":"no idea"}',
)
TIMES = {"ts", "latency_s", "duration_s", "env_s", "tick_s"}
PID = re.compile(r"pid \d+")  # the deadlock trap's lock holder: a process id the OS picks, in any two runs


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            if self.path.startswith("/slow/"):  # a slower model, for a supervisor to be killed mid-run
                time.sleep(0.15)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = PID.sub("pid N", json.dumps([body["messages"], body.get("seed")], sort_keys=True)).encode()
            text = REPLIES[int(hashlib.sha256(key).hexdigest(), 16) % len(REPLIES)]
            payload = {
                "model": body["model"],
                "choices": [{"message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": len(key) // 4, "completion_tokens": len(text) // 4},
            }
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def plan(url: str, extra: str = "") -> str:
    # check_timeout_s: a check that passes or fails must never be taken for the hang trap, or the runs differ; at
    # 0.5 s a check run on the remote host timed out on a machine running at a third of its speed
    return (
        '[project]\nname = "shards"\n[stages.A]\ntitle = "A"\n[stages.A.steps.baseline]\nkind = "api"\ntimeout = 120\n'
        f"{extra}[stages.A.steps.baseline.params]\n"
        f'base_url = "{url}"\nmodel = "m"\nseed = 5\nepisodes = 5\nmax_ticks = 6\ncheck_timeout_s = 3.0\n'
        "lock_timeout_s = 0.1\nemit_interval_s = 0\ngate = { min_ticks = 0 }\n"
    )


PID_LENGTHS = ("observation_chars", "context_chars")
"""Fields that count characters, the lock holder's process id among them: one more digit in a pid (the OS passing
99999 between two runs) is one more character there, and in the report's context profile and context check."""


def pid_widths(trace: Path) -> list[int]:
    """The number of digits of every process id in the trace, in order."""
    return [len(m.group(0)) for m in PID.finditer(trace.read_text())]


def content(trace: Path, pid_lengths: bool = True) -> list[dict[str, Any]]:
    """The trace's records without times, process ids as ``pid N``; without the counts that a pid's digits enter
    (``PID_LENGTHS``) when ``pid_lengths`` is False."""
    records = []
    for line in trace.read_text().splitlines():
        record = json.loads(PID.sub("pid N", line))
        gone = TIMES if pid_lengths or not PID.search(line) else TIMES.union(PID_LENGTHS)
        records.append({k: v for k, v in record.items() if k not in gone})
    return records


def report_content(path: Path, pid_lengths: bool = True) -> dict[str, Any]:
    """The report without its times (and without the trace file's path and hash, which cover the times); without
    the context's sizes (its profile, the context check's text) when ``pid_lengths`` is False."""
    report = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("createdAt", "durationS")}
    report["latency"] = report["latency"]["count"]
    report["mttr"] = {k: v for k, v in report["mttr"].items() if k not in ("seconds", "secondsP50")}
    report["trace"] = report["trace"]["records"]
    if not pid_lengths:  # the context's sizes, in the profile and in the context check's text
        del report["contextProfile"]
        report["protocolChecks"] = [
            {k: v for k, v in check.items() if not (k == "detail" and " chars" in str(v))}
            for check in report["protocolChecks"]
        ]
    return report


def assert_same_run(out: Path, unsharded: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sharded run's trace and report are the unsharded run's (times and process ids aside); the counts that
    include a pid's digits are compared too when the two runs' pids have the same widths. Returns both reports."""
    mine, theirs = out / "dirty_trace.jsonl", unsharded / "dirty_trace.jsonl"
    exact = pid_widths(mine) == pid_widths(theirs)
    assert content(mine, exact) == content(theirs, exact)
    return report_content(out / "eval_report.json", exact), report_content(unsharded / "eval_report.json", exact)


def _artifacts(session: Path) -> Path:
    return session / "artifacts" / "A" / "baseline"


@pytest.fixture(scope="module")
def unsharded(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    result, _, session = _run(plan(endpoint), tmp_path_factory.mktemp("one") / "project")
    assert result.exit_code == 0, result.error
    return _artifacts(session)


def test_three_local_shards_merge_into_the_unsharded_trace_and_report(
    endpoint: str, unsharded: Path, tmp_path: Path
) -> None:
    result, events, session = _run(plan(endpoint, "shards = 3\n"), tmp_path / "project")
    assert result.exit_code == 0, result.error
    out = _artifacts(session)
    mine, theirs = assert_same_run(out, unsharded)
    assert mine == theirs
    summary = _events(events, "step_succeeded", "baseline")[0]["payload"]["summary"]
    assert summary["shards"] == 3 and summary["episodes"] == 5
    assert summary["report"] == str(out / "eval_report.json")
    # each shard ran its own episodes (index modulo 3), ids unchanged
    for i, expected in enumerate((["ep-000", "ep-003"], ["ep-001", "ep-004"], ["ep-002"])):
        trace = out / f"shard{i}" / "dirty_trace.jsonl"
        assert sorted({json.loads(x)["episode"] for x in trace.read_text().splitlines()}) == expected
    handle = _events(events, "step_started", "baseline")[0]["payload"]["handle"]
    assert handle["executor"] == "shards" and len(handle["ranks"]) == 3


def test_shards_on_a_remote_host_merge_into_the_same_trace(endpoint: str, unsharded: Path, tmp_path: Path) -> None:
    python = tmp_path / "host-python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    with loopback_host(tmp_path / "host") as host:
        text = host.hosts_toml(python=str(python)) + plan(endpoint, 'shards = 2\nhosts = ["box"]\n')
        result, events, session = _run(text, tmp_path / "project")
        assert result.exit_code == 0, result.error
        handle = _events(events, "step_started", "baseline")[0]["payload"]["handle"]
        assert [r["executor"] for r in handle["ranks"]] == ["remote", "remote"]
        out = _artifacts(session)
        mine, theirs = assert_same_run(out, unsharded)
        assert mine == theirs


def test_a_merge_refuses_shards_of_different_runs(endpoint: str, tmp_path: Path) -> None:
    result, _, session = _run(plan(endpoint, "shards = 2\n"), tmp_path / "project")
    assert result.exit_code == 0, result.error
    out = _artifacts(session)
    record = json.loads((out / "shard1" / "shard.json").read_text())
    (out / "shard1" / "shard.json").write_text(json.dumps({**record, "task_set_hash": "other"}))
    params = {"base_url": endpoint, "model": "m", "seed": 5, "episodes": 5, "gate": {"min_ticks": 0}}
    with pytest.raises(ShardMergeError, match="shard1 ran task_set_hash 'other'"):
        merge(params, out, [out / "shard0", out / "shard1"])


def test_config_check_keeps_shards_to_api_steps() -> None:
    from pipeline.config import ConfigError, parse_config

    bad = '[stages.A]\ntitle = "A"\n[stages.A.steps.s]\nkind = "shell"\ncommand = "true"\nshards = 2\n'
    with pytest.raises(ConfigError, match=r"plan.toml:6: stages.A.steps.s.shards: shards split the episodes"):
        parse_config(bad, "plan.toml")


def test_kill9_mid_shards_then_resume_reattaches_every_shard_and_merges_once(
    endpoint: str, unsharded: Path, tmp_path: Path
) -> None:
    slow = endpoint.replace("/v1", "/slow/v1")
    write_plan(tmp_path, plan(slow, "shards = 2\n"))
    session = tmp_path / "sessions" / "s"  # the run id (session-stage-step-attempt) as the unsharded run's
    proc = spawn("run", "--headless", "--session", "s", cwd=tmp_path)
    wait_for(lambda: has_event(session, "step_progress", "A.baseline"), 60, "the shards to run episodes")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    r = phasef("run", "--headless", "--resume", "s", cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    events = journal_events(session)
    assert len(_events(events, "step_started", "baseline")) == 1
    assert [e["payload"]["alive"] for e in _events(events, "step_reattached", "baseline")] == [True]
    out = session / "artifacts" / "A" / "baseline"
    mine, theirs = assert_same_run(out, unsharded)
    assert mine.pop("model")["baseUrl"] == slow and theirs.pop("model")["baseUrl"] == endpoint
    assert mine == theirs


def test_two_runs_whose_pids_differ_in_width_still_compare(tmp_path: Path) -> None:
    """The OS may pass 99999 between two runs: the counts a pid's digits enter are then left out, the rest kept."""
    tick = {"kind": "tick", "tick": 2, "observation": "DEADLOCK x: run.lock held by pid {} for 0.1s", "ts": 1}
    lines = {}
    for name, pid in (("a", 99_998), ("b", 100_004), ("c", 100_007)):
        record = {**tick, "observation": tick["observation"].format(pid), "ts": pid}
        record["observation_chars"] = len(record["observation"])
        other = {"kind": "tick", "tick": 3, "observation": "ok", "observation_chars": 2}
        lines[name] = tmp_path / f"{name}.jsonl"
        lines[name].write_text(json.dumps(record) + "\n" + json.dumps(other) + "\n")
    a, b, c = lines["a"], lines["b"], lines["c"]
    assert pid_widths(a) == [9] and pid_widths(b) == [10] and pid_widths(b) == pid_widths(c)
    assert content(a) != content(b), "the character count differs with the pid's width"
    assert content(a, pid_lengths=False) == content(b, pid_lengths=False)
    assert content(b) == content(c), "same widths: compared exactly"
    assert content(a, pid_lengths=False)[1]["observation_chars"] == 2, "records without a pid keep their counts"
    reports = []
    for name, most in (("a", 1030), ("b", 1033)):
        report = {
            "latency": {"count": 3},
            "mttr": {"count": 1, "seconds": 0.5},
            "trace": {"records": 40},
            "contextProfile": {"maxChars": most},
            "protocolChecks": [
                {"name": "context_bounded", "passed": True, "detail": f"O(1): max {most} chars (budget 3020)"},
                {"name": "death_trace", "passed": False, "detail": "no death in the trace"},
            ],
        }
        reports.append(tmp_path / f"{name}.json")
        reports[-1].write_text(json.dumps(report))
    assert report_content(reports[0]) != report_content(reports[1])
    kept = report_content(reports[0], pid_lengths=False)
    assert kept == report_content(reports[1], pid_lengths=False)
    assert kept["protocolChecks"] == [
        {"name": "context_bounded", "passed": True},
        {"name": "death_trace", "passed": False, "detail": "no death in the trace"},
    ]
