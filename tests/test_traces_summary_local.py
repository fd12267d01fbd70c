"""The summary pass in the viewer's own process (``index_workers.SummaryWorkers.local``), chosen when no core is idle.

Its results are those of the in-process pass and of the worker processes on random and damaged traces; a file that
changes under it starts the index over; the growth goes on from its state. The choice (``IdleProbe``) is checked
on the machine itself: with every core kept busy by other processes, and in a process held to one core.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.traces import index_workers as workers_module
from pipeline.traces import summary_local, summary_records
from pipeline.traces.index import TraceIndex
from pipeline.traces.summary_local import IdleProbe
from pipeline.traces.summary_names import NameStore
from pipeline.traces.summary_worker import SummaryWorker
from tests.test_traces_summary_worker import index_of, partly_summarized, summary_key, trace_lines
from tests.tui_helpers import append_records, many_ticks, sample_records, write_trace

ROOT = Path(__file__).resolve().parent.parent


def children() -> set[int]:
    """The child processes of this process (all its threads')."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found.update(int(pid) for pid in (task / "children").read_text().split())
        except OSError:
            continue
    return found


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=trace_lines())
def test_local_summary_equals_the_in_process_and_the_worker_ones(
    lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 300)  # many batches
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.jsonl"
        path.write_bytes(b"\n".join(lines * 3))
        in_process = index_of(path, worker=False)
        with monkeypatch.context() as m:
            m.setenv(summary_local.ENV, "local")
            local = index_of(path, worker=True)
        assert local == in_process
        assert index_of(path, worker=True) == in_process  # (processes: the suite's default)


def test_the_local_pass_starts_no_process_summarizes_big_batches_and_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(summary_local.ENV, "local")
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 2000)
    records = sample_records() * 20 + many_ticks("e9", 200)
    path = write_trace(tmp_path / "grow.jsonl", records)
    before = children()
    index = TraceIndex(path, prime_bytes=0, worker_min_bytes=1)
    try:
        while index.scan_step():
            pass
        assert index.work_step()
        assert index.workers.local and index.workers.worker is None, "no core to spare (as asked): the pass runs here"
        assert children() == before, "no worker process was started"
        summarized = len(index.summaries)
        assert 0 < index.ends[summarized - 1] <= 2000 < index.ends[summarized], "one batch of the pass's size"
        # names interned straight into the viewer's summary (no string a name to free into its heap)
        assert type(index.summaries.episodes) is NameStore and type(index.summaries.chains) is NameStore
        index.run(threading.Event(), follow=False)
        assert index.complete and index.generation == 0
        assert not index.workers.local, "finished: the growth is summarized in small steps"
        assert index.workers.split_lines == 0, "no second worker: one process has nothing to split with"
        assert not (summary_records._actions or summary_records._tick_bytes), "the caches emptied once done"
        assert len(index.reader.buffer) == 0, "the batches' buffer let go"
        assert children() == before
        more = sample_records()[:7] + many_ticks("e9", 30, first=200)
        append_records(path, more)
        assert index.check_file() == "grown"
        index.run(threading.Event(), follow=False)
        grown = summary_key(index)
    finally:
        index.close()
    monkeypatch.setenv(summary_local.ENV, "process")
    assert grown == index_of(path, worker=False)


def test_the_local_pass_goes_on_from_chains_and_runs_summarized_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = partly_summarized(tmp_path)
    path = index.path
    try:
        monkeypatch.setenv(summary_local.ENV, "local")
        index.workers.min_bytes = 1
        index.work_step()
        assert index.workers.local and index.workers.worker is None
        index.run(threading.Event(), follow=False)
        assert index.complete and index.generation == 0
        got = summary_key(index)
    finally:
        index.close()
    assert got == index_of(path, worker=False)


def test_a_file_rewritten_under_the_local_pass_is_summarized_again_from_its_new_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same size, other lines (longer and shorter, the same bytes in all): the batch asked for no longer holds
    the lines the scan counted, and the pass starts over instead of summarizing what is not there."""
    monkeypatch.setenv(summary_local.ENV, "local")
    monkeypatch.setattr(workers_module, "WORKER_BATCH_BYTES", 1000)
    path = tmp_path / "t.jsonl"
    lines = [b'{"kind":"tick","episode":"e1","tick":%d,"outcome":"ok","observation":"%s"}' % (i, b"x" * 20)
             for i in range(300)]  # fmt: skip
    path.write_bytes(b"\n".join(lines) + b"\n")
    index = TraceIndex(path, include_partial=True, prime_bytes=0, worker_min_bytes=1)
    try:
        while index.scan_step():
            pass
        index.work_step()
        assert index.workers.local
        merged = [lines[i] + b"," + lines[i + 1][1:] for i in range(0, 300, 2)]  # two lines become one
        rewritten = b"\n".join(merged) + b"\n"
        rewritten += b" " * (path.stat().st_size - len(rewritten))
        with path.open("r+b") as fh:
            fh.write(rewritten)
        generation = index.generation
        index.run(threading.Event(), follow=False)
        assert index.generation > generation, "started over: readers drop what they derived"
        assert index.complete and index.workers.min_bytes is None
        got = summary_key(index)
    finally:
        index.close()
    assert got == index_of(path, worker=False)


def test_the_choice_is_asked_for_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = IdleProbe()
    for asked, spare in (("process", True), ("local", False), (" Local ", False)):
        monkeypatch.setenv(summary_local.ENV, asked)
        assert probe.ready(), "a choice asked for waits for no window"
        assert probe.spare_core() is spare
    monkeypatch.setenv(summary_local.ENV, "threads")
    assert summary_local.mode() == "auto", "an unknown choice is the default"


def test_idle_cores_are_read_from_the_kernels_counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(summary_local.ENV, "auto")
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\n")
    probe = IdleProbe(str(stat))
    stat.write_text("cpu  250 0 200 850 10 0 0 40 0 0\n")  # 350 ticks more: idle 50 + iowait 10
    assert probe.idle_cores() == pytest.approx(probe.cores * 60 / 350)
    for broken in ("", "intr 1 2 3\n", "cpu  1 2 x 4 5\n"):
        stat.write_text(broken)
        assert probe.idle_cores() is None
    assert IdleProbe(str(tmp_path / "missing")).idle_cores() is None
    if summary_local.usable_cores() >= 2:
        assert IdleProbe(str(tmp_path / "missing")).spare_core(), "unknown: worker processes, as before the probe"


BUSY = "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end:\n    pass\n"


def test_with_every_core_busy_the_pass_runs_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(summary_local.ENV, "auto")
    cores = os.cpu_count() or 1
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        probe = IdleProbe()
        time.sleep(0.4)
        assert probe.ready()
        idle = probe.idle_cores()
        assert idle is not None and idle < summary_local.IDLE_CORES_MIN, f"{idle} cores idle with all busy"
        assert not probe.spare_core()
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def test_a_process_held_to_one_core_runs_the_pass_itself() -> None:
    code = (
        "import os\n"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
        "from pipeline.traces.summary_local import IdleProbe, usable_cores\n"
        "print(usable_cores(), IdleProbe().spare_core())\n"
    )
    env = {**os.environ, "PHASEF_SUMMARY_WORKERS": "auto"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "False"]


def test_worker_processes_are_what_the_suite_runs(tmp_path: Path) -> None:
    """The other tests of the pass rely on the suite's pin (conftest.py): worker processes whatever the load."""
    assert summary_local.mode() == "process"
    path = write_trace(tmp_path / "t.jsonl", sample_records() * 30)
    index = TraceIndex(path, include_partial=True, prime_bytes=0, worker_min_bytes=1)
    try:
        index.work_step()
        assert type(index.workers.worker) is SummaryWorker
    finally:
        index.close()
