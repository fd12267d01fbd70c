"""A failed write leaves the old file byte for byte as it was: ``trace import -o``, datasets and reports.

The failures are real: the writer runs in a child process whose file size limit (``RLIMIT_FSIZE``) makes the
kernel refuse the write in the middle (EFBIG), or the input cannot be imported at all.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.data.jsonl import JsonlWriter, write_json, write_jsonl
from pipeline.fsio import NotARegularFile, atomic_open, atomic_write_bytes, atomic_write_text
from tests.spine_helpers import ROOT, phasef

OLD = b'{"precious":"data"}\n'
LIMIT = 64 * 1024  # bytes any one file of the child may reach


def _limited(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _run_limited(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: _limited(LIMIT),
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
    )


def _canonical_trace(path: Path, ticks: int) -> None:
    lines = [{"kind": "episode_start", "episode": "e", "ts": 1.0}]
    lines += [
        {"kind": "tick", "episode": "e", "ts": 2.0 + i, "tick": i, "outcome": "ok", "observation": "x" * 200}
        for i in range(ticks)
    ]
    lines.append({"kind": "episode_end", "episode": "e", "ts": 9e3, "outcome": "success", "ticks": ticks})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def _no_temporary_left(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_failed_import_of_invalid_utf8_leaves_the_output_intact(tmp_path: Path) -> None:
    keep = tmp_path / "keep.jsonl"
    keep.write_bytes(OLD)
    bad = tmp_path / "badutf8.jsonl"
    bad.write_bytes(b'{"kind": "tick", "episode": "\xff\xfe"}\n\xc3\x28\n')
    r = phasef("trace", "import", str(bad), "-o", str(keep), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert f"{bad}:1: invalid UTF-8" in r.stderr and f"{keep} left as it was" in r.stderr
    assert keep.read_bytes() == OLD
    _no_temporary_left(tmp_path)


def test_import_that_fails_mid_write_leaves_the_output_intact(tmp_path: Path) -> None:
    src = tmp_path / "big.jsonl"
    _canonical_trace(src, 2000)  # its canonical output is far over LIMIT
    keep = tmp_path / "keep.jsonl"
    keep.write_bytes(OLD)
    r = _run_limited([sys.executable, "-m", "phasef_tui.cli", "trace", "import", str(src), "-o", str(keep)], tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"cannot write {keep}" in r.stderr and "it was left as it was" in r.stderr
    assert "Traceback" not in r.stderr
    assert keep.read_bytes() == OLD
    _no_temporary_left(tmp_path)
    # and without the limit the same import replaces it
    assert phasef("trace", "import", str(src), "-o", str(keep), cwd=tmp_path).returncode == 0
    assert len(keep.read_text().splitlines()) == 2002


WRITERS = {
    "write_jsonl": "from pipeline.data.jsonl import write_jsonl\n"
    "write_jsonl(OUT, ({'row': i, 'text': 'y' * 100} for i in range(5000)))",
    "JsonlWriter": "from pipeline.data.jsonl import JsonlWriter\n"
    "with JsonlWriter(OUT) as w:\n"
    "    for i in range(5000):\n"
    "        w.write({'row': i, 'text': 'y' * 100})",
    "write_json": "from pipeline.data.jsonl import write_json\nwrite_json(OUT, {'rows': ['y' * 100] * 5000})",
    "write_report": "from pipeline.report.eval_report import EvalReport, write_report\n"
    "import pipeline.fsio as fsio\n"
    "class Big(EvalReport):\n"
    "    def model_dump(self, **kw):\n"
    "        return {**dict.fromkeys(('schema','runId','createdAt','verdict','reasons','taskSetHash',"
    "'gateConfigHash')), 'padding': 'z' * 200000}\n"
    "write_report(Big.model_construct(), OUT)",
    "compare.write_outputs": "from pipeline.report.compare import write_outputs\n"
    "write_outputs({'rows': ['y' * 100] * 5000}, 'md', [OUT.parent], OUT.stem)",
    "packet._atomic_write": "from pipeline.audit.packet import _atomic_write\n_atomic_write(OUT, 'p' * 200000)",
    "verdict": "from pipeline.audit import verdict\n"
    "class O:\n"
    "    def to_json(self): return 'v' * 200000\n"
    "verdict.write_outcome(O(), OUT)",
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_dataset_and_report_writers_that_fail_mid_write_leave_the_old_file(writer: str, tmp_path: Path) -> None:
    out = tmp_path / ("out.json" if "json" in writer and "jsonl" not in writer.lower() else "out.jsonl")
    if writer == "compare.write_outputs":
        out = tmp_path / "compare.json"
    out.write_bytes(OLD)
    code = f"from pathlib import Path\nOUT = Path({str(out)!r})\n" + WRITERS[writer]
    r = _run_limited([sys.executable, "-c", textwrap.dedent(code)], tmp_path)
    assert r.returncode != 0 and "File too large" in r.stderr, (r.stdout, r.stderr[-2000:])
    assert out.read_bytes() == OLD
    _no_temporary_left(tmp_path)


def test_writers_replace_the_file_on_success(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    out.write_bytes(OLD)
    assert write_jsonl(out, [{"a": 1}, {"b": 2}]) == 2
    assert out.read_bytes() == b'{"a":1}\n{"b":2}\n'
    write_json(tmp_path / "d.json", {"a": "ü"})
    assert json.loads((tmp_path / "d.json").read_text()) == {"a": "ü"}
    with pytest.raises(RuntimeError), JsonlWriter(out) as w:
        w.write({"c": 3})
        raise RuntimeError("the producer failed half-way")
    assert out.read_bytes() == b'{"a":1}\n{"b":2}\n'
    _no_temporary_left(tmp_path)


def test_atomic_open_keeps_permissions_follows_symlinks_and_refuses_devices(tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("old")
    os.chmod(target, 0o600)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert (target.stat().st_mode & 0o777) == 0o600
    with pytest.raises(NotARegularFile, match="is a character device"), atomic_open(Path("/dev/null"), "wb") as fh:
        fh.write(b"x")
    assert Path("/dev/null").is_char_device()


def test_atomic_write_with_permissions_sets_them_over_the_old_file_s_and_the_umask(tmp_path: Path) -> None:
    old_file = tmp_path / "old.bin"
    old_file.write_bytes(b"old")
    os.chmod(old_file, 0o664)
    atomic_write_bytes(old_file, b"new", permissions=0o600)
    assert old_file.read_bytes() == b"new" and (old_file.stat().st_mode & 0o777) == 0o600
    mask = os.umask(0o002)
    try:
        atomic_write_bytes(tmp_path / "new.bin", b"x", fsync=False, permissions=0o600)
    finally:
        os.umask(mask)
    assert ((tmp_path / "new.bin").stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.bin", "old.bin"]  # no temporary file left


def test_replace_folder_swaps_a_whole_folder_and_leaves_nothing_aside(tmp_path: Path) -> None:
    from pipeline.fsio import replace_folder

    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "old.bin").write_bytes(b"old")
    staging = tmp_path / ".model.tmp"
    staging.mkdir()
    (staging / "new.bin").write_bytes(b"new")
    replace_folder(staging, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert [p.name for p in dest.iterdir()] == ["new.bin"]
    # a staging folder that cannot be renamed into place (it is gone) leaves the old folder where it was
    with pytest.raises(FileNotFoundError):
        replace_folder(tmp_path / "missing", dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (dest / "new.bin").read_bytes() == b"new"


def test_dash_output_writes_to_stdout_and_dev_stdout_is_refused_with_the_hint(tmp_path: Path) -> None:
    """``-o -`` streams the output to standard output; ``-o /dev/stdout`` (not a regular file) is refused, naming
    the path and pointing at ``-``; nothing is written beside either."""
    src = tmp_path / "t.jsonl"
    _canonical_trace(src, 5)
    to_file = phasef("trace", "import", str(src), "-o", str(tmp_path / "copy.jsonl"), cwd=tmp_path)
    assert to_file.returncode == 0, to_file.stderr
    r = phasef("trace", "import", str(src), "-o", "-", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (tmp_path / "copy.jsonl").read_text() and len(r.stdout.splitlines()) == 7
    assert "7 records, 1 episodes, 5 ticks -> standard output" in r.stderr
    assert not (tmp_path / "-").exists()

    r = phasef("trace", "import", str(src), "-o", "-", "--json", cwd=tmp_path)
    assert r.returncode == 2 and "--json and -o - would both write to standard output" in r.stderr
    assert json.loads(r.stdout)["ok"] is False  # --json: the error as the one JSON document, no records

    r = phasef("trace", "import", str(src), "-o", "/dev/stdout", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""  # as for any output that cannot be written
    assert "cannot write /dev/stdout" in r.stderr and "not a regular file" in r.stderr
    assert "-o - writes to standard output" in r.stderr and "it was left as it was" in r.stderr

    r = phasef("trace", "export", str(src), "--to", "otlp-json", "-o", "-", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    spans = json.loads(r.stdout)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert len(spans) >= 5 and "spans -> standard output" in r.stderr

    built = phasef("report", "build", "--trace", str(src), "-o", str(tmp_path / "report.json"), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    r = phasef("report", "build", "--trace", str(src), "-o", "-", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    on_stdout, on_disk = json.loads(r.stdout), json.loads((tmp_path / "report.json").read_text())
    assert on_stdout.pop("createdAt") and on_disk.pop("createdAt")
    assert on_stdout == on_disk and on_stdout["schema"].startswith("phasef.eval_report")
    assert "-> standard output" in r.stderr
    r = phasef("report", "build", "--trace", str(src), "-o", "-", "--json", cwd=tmp_path)
    assert r.returncode == 2 and json.loads(r.stdout)["ok"] is False
    _no_temporary_left(tmp_path)
