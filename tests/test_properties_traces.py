"""Property tests of the trace readers and importers: any bytes, any JSON, any ZIP give records and bad lines or
a clear error (``UnknownFormat``, ``OSError``), never a traceback, a hang or unbounded memory. Memory is checked
two ways: the traced peak of every example, and a child process under a hard address-space limit
(``RLIMIT_AS``) reading inputs many times larger than that limit."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.traces.analysis import TraceAnalysis, analyze
from pipeline.traces.importers import FORMATS, UnknownFormat, detect_format, import_trace
from pipeline.traces.reader import BadLine, iter_records
from tests.spine_helpers import ROOT

PEAK_LIMIT = 64 * 2**20  # bytes the readers may hold for inputs of a few kilobytes
SUFFIXES = [".jsonl", ".json", ".traj", ".eval", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
KEYS = ["kind", "episode", "tick", "ts", "schema", "outcome", "action", "error_class", "chain_id", "chain_role",
        "observation", "history", "trajectory", "messages", "role", "content", "eval", "version", "samples",
        "events", "source", "observation", "tool", "traj", "info", "run_id"]  # fmt: skip
VALUES = st.sampled_from(
    ["tick", "episode_start", "episode_end", "e", "ok", "error", "phasef.dirty_trace/1", "assistant", "user"]
)
shaped = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), VALUES | json_values, max_size=6),
    lambda inner: st.dictionaries(st.sampled_from(KEYS), inner | st.lists(inner, max_size=3) | VALUES, max_size=5),
    max_leaves=15,
)


def _jsonl(objs: list[Any]) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


@st.composite
def zips(draw: st.DrawFn) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name in draw(
            st.lists(st.sampled_from(["header.json", "start.json", "samples/a_epoch_1.json", "x.json"]), max_size=3)
        ):
            body = draw(st.one_of(st.binary(max_size=200), shaped.map(lambda d: json.dumps(d).encode())))
            archive.writestr(name, body)
    data = buf.getvalue()
    cut = draw(st.integers(0, len(data)))
    return data if draw(st.booleans()) else data[:cut]  # a whole archive or a truncated one


inputs = st.one_of(
    st.binary(max_size=3000),
    st.lists(shaped, max_size=12).map(_jsonl),
    shaped.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(st.one_of(shaped.map(lambda d: json.dumps(d).encode()), st.binary(max_size=60)), max_size=10).map(
        lambda parts: b"\n".join(p.replace(b"\n", b" ") for p in parts)
    ),
    zips(),
)


def _read_everything(path: Path) -> None:
    for item in iter_records(path, max_line_bytes=512):
        assert isinstance(item, BadLine) or (isinstance(item, tuple) and isinstance(item[1], dict))
    try:
        fmt = detect_format(path)
    except UnknownFormat as exc:
        assert str(exc).startswith(str(path))
    else:
        assert fmt in FORMATS
    for chosen in (None, *FORMATS):
        try:
            records, bad = import_trace(path, chosen)
        except UnknownFormat as exc:
            assert str(path) in str(exc)
            continue
        assert all(isinstance(r, dict) and r["kind"] in ("episode_start", "tick", "episode_end") for r in records)
        assert all(isinstance(b, BadLine) and b.reason for b in bad)
    try:
        result = analyze(path)
    except UnknownFormat:
        return
    assert isinstance(result, TraceAnalysis)
    result.model_dump_json()


@given(inputs, st.sampled_from(SUFFIXES))
def test_readers_and_importers_take_any_input(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory(prefix="trace-prop-") as folder:
        path = Path(folder) / f"t{suffix}"
        path.write_bytes(data)
        tracemalloc.start()
        try:
            _read_everything(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < PEAK_LIMIT, f"peak {peak} bytes for an input of {len(data)} bytes"


MEMORY_LIMIT = 512 * 2**20
HUGE_SCRIPT = """
import os, sys
from pathlib import Path
from pipeline.traces.analysis import analyze
from pipeline.traces.importers import UnknownFormat, detect_format, import_trace
from pipeline.traces.reader import iter_records
from pipeline.fsio import NotARegularFile

folder = Path(sys.argv[1])
for name in sorted(os.listdir(folder)):
    path = folder / name
    bad = sum(1 for item in iter_records(path) if not isinstance(item, tuple))
    try:
        fmt = detect_format(path)
        records, problems = import_trace(path, fmt)
        result = analyze(path, fmt=fmt)
        print(name, fmt, len(records), len(problems), len(result.bad_lines), bad, flush=True)
    except (UnknownFormat, OSError) as exc:
        print(name, "refused:", exc, flush=True)
for special in ("/dev/zero", "/dev/urandom"):
    try:
        detect_format(Path(special))
    except NotARegularFile as exc:
        print(special, "refused:", exc, flush=True)
"""


def test_huge_inputs_under_a_hard_memory_limit(tmp_path: Path) -> None:
    """Files larger than the child's whole address space: each is read in bounded memory or refused."""
    size = MEMORY_LIMIT + MEMORY_LIMIT // 4
    with open(tmp_path / "zeros.jsonl", "wb") as fh:  # one runaway "line" of NUL bytes (sparse, so free to make)
        fh.truncate(size)
    with open(tmp_path / "lines.jsonl", "wb") as fh:  # good lines around a runaway one
        fh.write(b'{"kind": "episode_start", "episode": "e", "ts": 1.0}\n')
        fh.seek(size)
        fh.write(b'\n{"kind": "episode_end", "episode": "e", "ts": 2.0, "outcome": "success", "ticks": 0}\n')
    (tmp_path / "deep.json").write_bytes(b"[" * 5_000_000 + b"]" * 5_000_000)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(HUGE_SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.splitlines()
    assert any(line.startswith("deep.json refused:") and "invalid JSON" in line for line in out), out
    # records, import problems, analysis bad lines, reader bad lines: the runaway line is one bad line everywhere
    assert "lines.jsonl phasef 2 1 1 1" in out, out  # both good lines around it kept
    assert "zeros.jsonl phasef 0 1 1 1" in out, out
    assert any(line.startswith("/dev/zero refused:") and "character device" in line for line in out), out
