"""The viewer's summary (badges, filters, chains) is the same whichever way it is computed: the fast decoder in this
process, the same pass in a worker process (``summary_worker``), or the plain decoder (every line through orjson),
on random traces and on tricky lines: keywords inside strings, escaped quotes, bad UTF-8, torn lines, non-objects.

Not covered on purpose: numbers out of a double's range (``1e400``) in fields no summary reads; msgspec skips such
fields without decoding them (as it did before the worker existed), orjson rejects the whole line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.traces import index_workers as workers_module
from pipeline.traces import summary as summary_module
from pipeline.traces import summary_worker as worker_module
from pipeline.traces import worker_read
from pipeline.traces.index import TraceIndex
from tests.tui_helpers import append_records, many_ticks, sample_records, write_trace

KEYWORDS = ['"chain_id":"c9"', '"outcome":"death"', '"trap":"deadlock"', '\\"kind\\":\\"tick\\"', "schema_error", "}{"]

texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(KEYWORDS),
    st.builds(lambda a, b: a + '"' + b, st.text(max_size=5), st.sampled_from(KEYWORDS)),  # escaped quotes
)
actions = st.one_of(
    st.none(),
    st.fixed_dictionaries({"tool": st.sampled_from(["run_tests", "edit", "bash", "grep"])}),
    st.fixed_dictionaries(
        {"tool": st.just("bash"), "args": st.fixed_dictionaries({"command": st.sampled_from(["ls -l", "pytest"])})}
    ),
    st.sampled_from(["run_tests", 3, [1]]),
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["tick"] * 8 + ["episode_start", "episode_end", "weird", None]))
    rec: dict[str, Any] = {"kind": kind, "episode": draw(st.sampled_from(["e1", "e2", "e3", 7, None]))}
    if kind == "tick":
        rec["tick"] = draw(st.one_of(st.integers(-3, 60), st.just("x"), st.just(2**40)))
        rec["outcome"] = draw(st.sampled_from(["ok", "ok", "ok", "error", "timeout", "death", None]))
        rec["action"] = draw(actions)
        rec["progress"] = draw(st.sampled_from([True, False, False, None, "yes"]))
        rec["observation"] = draw(texts)
        for key, values in (
            ("error_class", ["SchemaViolation", "Deadlock", "NotFound", "Timeout", "thrash-loop", 5]),
            ("chain_id", ["c1", "c2", 3]),
            ("chain_role", ["failure", "attempt", "recovered", "death"]),
            ("trap", ["deadlock", "hang", ""]),
            ("recovery", ["reflex", "model", ""]),
            ("schema_error", ["missing tool", ""]),
        ):
            if draw(st.booleans()):
                rec[key] = draw(st.sampled_from(values))
        rec["context_chars"] = draw(st.one_of(st.integers(-5, 9000), st.just(2**33), st.none()))
        rec["latency_s"] = draw(st.one_of(st.floats(0, 5, width=32), st.integers(0, 3), st.just("fast")))
    elif kind == "episode_end":
        rec["outcome"] = draw(st.sampled_from(["success", "failure", "death", "aborted", "timeout"]))
    return rec


@st.composite
def trace_lines(draw: st.DrawFn) -> list[bytes]:
    lines: list[bytes] = []
    for rec in draw(st.lists(records(), min_size=1, max_size=60)):
        raw = orjson.dumps(rec)
        damage = draw(st.sampled_from(["none"] * 12 + ["torn", "utf8", "spaces", "list", "empty", "text"]))
        if damage == "torn":
            raw = raw[: draw(st.integers(1, max(1, len(raw) - 1)))]
        elif damage == "utf8":
            raw = raw.replace(b'"kind"', b'"k\xffind"', 1) if draw(st.booleans()) else raw[:-1] + b',"o":"\xc3"}'
        elif damage == "spaces":
            raw = raw.replace(b":", b" : ").replace(b",", b" ,\t")
        elif damage == "list":
            raw = b"[" + raw + b"]"
        elif damage == "empty":
            raw = b""
        elif damage == "text":
            raw = b'"tick"'
        lines.append(raw)
    return lines


def summary_key(index: TraceIndex) -> tuple[Any, ...]:
    s = index.summaries
    return (
        bytes(s.kind),
        bytes(s.flags),
        bytes(s.episode),
        bytes(s.tick),
        bytes(s.chain),
        bytes(s.context_chars),
        bytes(s.latency),
        s.episodes.names,
        s.chains.names,
        bytes(s.chain_episode),
        [bytes(a) for a in s.chain_lines],
        {flag: bytes(lines) for flag, lines in s.flag_lines.items()},
        s.flagged_upto,
        {ep: (st.runs, st.no_progress) for ep, st in s.episode_state.items()},
    )


def index_of(path: Path, *, worker: bool, prime_bytes: int = 0) -> tuple[Any, ...]:
    index = TraceIndex(path, include_partial=True, prime_bytes=prime_bytes, worker_min_bytes=1 if worker else None)
    try:
        index.run(threading.Event(), follow=False)
        assert index.complete
        assert index.generation == 0, "no worker was lost (the pass was not started over in-process)"
        return summary_key(index)
    finally:
        index.close()


def plain_index_of(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    """The summary with every line decoded the plain way (orjson, then the record built from the dict)."""

    class PlainOnly:
        @staticmethod
        def decode(_raw: bytes) -> Any:
            raise msgspec.DecodeError("the plain way only")

    with monkeypatch.context() as m:
        m.setattr(summary_module, "fast_decoder", PlainOnly)
        return index_of(path, worker=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=trace_lines())
def test_fast_summary_equals_the_plain_decoder(lines: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.jsonl"
        path.write_bytes(b"\n".join(lines))
        assert index_of(path, worker=False) == plain_index_of(path, monkeypatch)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=trace_lines())
def test_worker_summary_equals_the_in_process_one(lines: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 300)  # many batches, several asked ahead
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.jsonl"
        path.write_bytes(b"\n".join(lines * 3))
        assert index_of(path, worker=True) == index_of(path, worker=False)


def partly_summarized(tmp_path: Path) -> TraceIndex:
    """An index of a trace whose first lines are summarized in-process (chains, open runs), no worker yet."""
    records = sample_records() * 40 + many_ticks("e9", 300)
    path = write_trace(tmp_path / "t.jsonl", records)
    index = TraceIndex(path, prime_bytes=0, worker_min_bytes=None)
    while index.scan_step():
        pass
    for _ in range(3):
        index.summarize_step(max_bytes=1500)
    assert index.chain_count > 0 and index.summaries.episode_state
    return index


def test_workers_go_on_from_chains_and_runs_summarized_before_them(tmp_path: Path) -> None:
    """The first lines are summarized in-process (chains, open runs); the workers then start from that state."""
    index = partly_summarized(tmp_path)
    path = index.path
    try:
        index.workers.min_bytes = 1
        index.run(threading.Event(), follow=False)
        assert index.complete and index.generation == 0 and index.workers.split_lines > 0
        assert summary_key(index) == index_of(path, worker=False)
    finally:
        index.close()


def test_worker_hands_its_state_back_and_growth_goes_on_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 2000)
    records = sample_records() * 20 + many_ticks("e9", 200)
    path = write_trace(tmp_path / "grow.jsonl", records)
    index = TraceIndex(path, prime_bytes=0, worker_min_bytes=1)
    try:
        index.work_step()
        assert index.workers.worker is not None, "a worker summarizes past the threshold"
        worker_proc = index.workers.worker.proc
        index.run(threading.Event(), follow=False)
        assert index.workers.worker is None and worker_proc.poll() is not None, "no worker process is kept idle"
        more = sample_records()[:7] + many_ticks("e9", 30, first=200)
        append_records(path, more)
        index.workers.min_bytes = None  # the growth is summarized in this process, from the worker's state
        assert index.check_file() == "grown"
        index.run(threading.Event(), follow=False)
        grown = summary_key(index)
    finally:
        index.close()
    reference = TraceIndex(path, prime_bytes=0, worker_min_bytes=None)
    try:
        reference.run(threading.Event(), follow=False)
        assert grown == summary_key(reference)
        assert reference.summarized == len(records) + len(more)
    finally:
        reference.close()


def test_a_dead_worker_means_summarizing_again_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 1000)
    path = write_trace(tmp_path / "t.jsonl", sample_records() * 30)
    index = TraceIndex(path, include_partial=True, prime_bytes=0, worker_min_bytes=1)
    try:
        index.work_step()
        assert index.workers.worker is not None
        index.workers.worker.proc.kill()
        generation = index.generation
        index.run(threading.Event(), follow=False)
        assert index.generation > generation, "readers are told to drop what they derived"
        assert index.complete and index.workers.min_bytes is None
        assert summary_key(index) == index_of(path, worker=False)
    finally:
        index.close()


def test_a_worker_speaking_another_protocol_is_a_lost_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that answers garbage (here: a header announcing an absurd size, then text) is not believed."""
    liar = tmp_path / "liar.sh"
    liar.write_text("#!/bin/sh\nprintf '\\377\\377\\377\\377\\377\\377\\377\\177not a pickle'\nexec cat >/dev/null\n")
    liar.chmod(0o755)
    monkeypatch.setattr(worker_module.sys, "executable", str(liar))
    path = write_trace(tmp_path / "t.jsonl", sample_records() * 30)
    index = TraceIndex(path, include_partial=True, prime_bytes=0, worker_min_bytes=1)
    try:
        index.run(threading.Event(), follow=False)
        assert index.complete and index.workers.min_bytes is None, "summarized in-process after the bad answer"
        monkeypatch.undo()
        assert summary_key(index) == index_of(path, worker=False)
    finally:
        index.close()


def test_numpy_found_but_not_loading_means_summarizing_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers start before numpy is imported (to take their answers in); if it then does not load, they go and
    the pass is done here, with the same result."""
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 1000)
    monkeypatch.setattr(workers_module, "numpy_available", lambda: True)
    monkeypatch.setattr(workers_module, "numpy_or_none", lambda: None)
    path = write_trace(tmp_path / "t.jsonl", sample_records() * 30)
    index = TraceIndex(path, include_partial=True, prime_bytes=0, worker_min_bytes=1)
    try:
        index.work_step()
        assert index.workers.worker is None and index.workers.min_bytes is None
        index.run(threading.Event(), follow=False)
        assert index.complete and index.workers.split_lines == 0
        monkeypatch.undo()
        assert summary_key(index) == index_of(path, worker=False)
    finally:
        index.close()


@pytest.mark.parametrize("mapping", [True, False])
def test_batches_are_mapped_or_read_into_one_buffer_without_their_last_newline(tmp_path: Path, mapping: bool) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":22}\n' + b"x" * 100 + b"\n{tail")
    reader = worker_read.BatchReader(mapping=mapping)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert bytes(reader.read(fd, 0, 17, 2)) == b'{"a":1}\n{"b":22}'
        buffer = reader.buffer
        assert bytes(reader.read(fd, 8, 17, 1)) == b'{"b":22}'
        assert reader.buffer is buffer  # (a batch no bigger than the buffer reads into it again)
        assert bytes(reader.read(fd, 17, 118, 1)) == b"x" * 100  # bigger: a bigger buffer
        assert len(reader.buffer) >= (0 if mapping else 101), "(mapped: no buffer at all)"
        # a file shorter than asked (it shrank under the pass): what is there, no newline to drop
        assert bytes(reader.read(fd, 118, 200, 1)) == b"{tail"
        assert bytes(reader.read(fd, 500, 600, 1)) == b""
    finally:
        os.close(fd)


def test_numpy_is_loaded_with_one_blas_thread_and_the_environment_is_left_as_it_was() -> None:
    code = (
        "import os, sys\n"
        "from pipeline.traces.index_scan import numpy_or_none\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "assert numpy_or_none() is not None\n"
        "print(before, len(os.listdir('/proc/self/task')), 'OPENBLAS_NUM_THREADS' in os.environ)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    before, after, variable_left = out.split()
    assert int(after) == int(before), "numpy's import started BLAS threads"
    assert variable_left == "False"
    # a choice the user made stands: two threads asked for, two threads there are (on a machine of 2+ cores)
    env["OPENBLAS_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    before, after, variable_left = out.split()
    assert variable_left == "True"
    if (os.cpu_count() or 1) >= 2:
        assert int(after) == int(before) + 1


def test_a_worker_runs_with_core_files_off(tmp_path: Path) -> None:
    """A worker reads its batches mapped (``worker_read.mapped``): a file cut short under a mapping kills it by
    SIGBUS, and it leaves no core file then."""
    path = write_trace(tmp_path / "t.jsonl", many_ticks("e1", 50))
    worker = worker_module.SummaryWorker.start(path, worker_module._Summaries())
    assert worker is not None
    try:
        size = path.stat().st_size
        worker.ask(0, 0, size, 50)
        assert worker.answer().count == 50
        limits = Path(f"/proc/{worker.proc.pid}/limits").read_text().splitlines()
        core = next(line for line in limits if line.startswith("Max core file size"))
        assert core.split()[4] == "0", core
    finally:
        worker.close()
