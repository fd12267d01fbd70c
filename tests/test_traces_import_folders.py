"""``phasef trace import DIR -o OUT``: whole run folders, through the real command line."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phasef_tui.cli import main
from pipeline.traces.importers import import_trace
from pipeline.traces.importers.folders import import_folder, iter_units

FOREIGN = Path(__file__).parent / "fixtures" / "foreign"
CODEX = next((FOREIGN / "codex" / "sessions").rglob("rollout-*.jsonl"))  # the hand-written one: 12 ticks
REPO = Path(__file__).resolve().parents[1]


def _mixed_folder(root: Path) -> Path:
    """A folder holding every fixture format, a file of no known format and a damaged rollout."""
    folder = root / "runs"
    shutil.copytree(FOREIGN, folder)
    (folder / "preds.json").write_text(json.dumps({"astropy__astropy-12907": {"model_patch": ""}}))
    damaged = folder / "codex" / "rollout-damaged.jsonl"
    lines = CODEX.read_text().splitlines()
    damaged.write_text("\n".join([*lines[:5], "{not json", *lines[5:]]) + "\n" + lines[-1][:40])
    return folder


def test_folder_import_one_episode_per_session_and_a_summary_of_what_was_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _mixed_folder(tmp_path)
    out = tmp_path / "all.jsonl"
    assert main(["trace", "import", str(folder), "-o", str(out), "--jobs", "2"]) == 0
    err = capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    formats = {r["source"]["format"] for r in records}
    assert formats == {"aider", "claude-code", "codex", "otel-genai", "voyager"}
    # every unit's records, in walk order, exactly as importing each file alone gives them
    expected: list[dict[str, object]] = []
    for unit in iter_units(folder):
        if unit.checkpoint:
            from pipeline.traces.importers import voyager

            expected.extend(voyager.convert_checkpoint(unit.path)[0])
        elif unit.path.name != "preds.json":
            expected.extend(import_trace(unit.path)[0])
    assert records == json.loads(json.dumps(expected))
    starts = [r for r in records if r["kind"] == "episode_start"]
    # claude (3 hand-written, 3 recorded), codex (2 hand-written files, 3 recorded), aider, voyager tasks (6
    # hand-written, 2 recorded), otel (2 traces hand-written, 2 traces in each of the 2 recorded files)
    assert len(starts) == 3 + 3 + 2 + 3 + 3 + 6 + 2 + 2 + 4
    assert "18 files (aider 1, claude-code 6, codex 5, otel-genai 3, voyager 2)" in err  # and preds.json
    assert "skipped files: 1; bad lines: 2" in err
    assert f"{folder / 'preds.json'}:0: a JSON object with keys astropy__astropy-12907 is none of the known" in err
    damaged = folder / "codex" / "rollout-damaged.jsonl"
    assert f"{damaged}:6: invalid JSON" in err
    assert f"{damaged}:{len(CODEX.read_text().splitlines()) + 2}: torn last line" in err


def test_folder_import_in_one_process_gives_the_same_output(tmp_path: Path) -> None:
    folder = _mixed_folder(tmp_path)
    one, two = io.BytesIO(), io.BytesIO()
    first = import_folder(folder, one, jobs=1)
    second = import_folder(folder, two, jobs=2)
    assert one.getvalue() == two.getvalue() and one.getvalue()
    assert (first.files, first.records, first.episodes, first.ticks) == (
        second.files,
        second.records,
        second.episodes,
        second.ticks,
    )
    assert [str(b) for b in first.skipped + first.bad_lines] == [str(b) for b in second.skipped + second.bad_lines]


def test_folder_import_keeps_the_old_output_when_it_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "all.jsonl"
    out.write_text("previous\n")
    assert main(["trace", "import", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert out.read_text() == "previous\n"
    assert "cannot read" in capsys.readouterr().err


def test_folder_import_names_the_output_when_the_output_cannot_be_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder that reads fine and an output that cannot be written: the output is what is named, as for a file."""
    folder = _mixed_folder(tmp_path)
    (tmp_path / "plain").write_text("a file, not a folder\n")
    out = tmp_path / "plain" / "all.jsonl"
    assert main(["trace", "import", str(folder), "-o", str(out), "--jobs", "1"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out}: Not a directory; it was left as it was" in err
    assert "cannot read" not in err
    assert (tmp_path / "plain").read_text() == "a file, not a folder\n"


def test_folder_import_names_the_output_when_a_write_fails_midway(tmp_path: Path) -> None:
    """A write that fails while the folder is imported (here: past the file-size limit, EFBIG) is a write error
    naming the output; the earlier output stays as it was and no temporary file is left beside it."""
    folder = _mixed_folder(tmp_path)
    out = tmp_path / "all.jsonl"
    out.write_text("previous\n")
    code = (
        "import resource, signal, sys\n"
        "from phasef_tui.cli import main\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        f"sys.exit(main(['trace', 'import', {str(folder)!r}, '-o', {str(out)!r}, '--jobs', '1']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert f"cannot write {out}: File too large; it was left as it was" in done.stderr
    assert "cannot read" not in done.stderr
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.jsonl", "runs"]


def _rss_of_folder_import(folder: Path, out: Path) -> tuple[int, int]:
    """Peak resident memory (KiB) of the importing process and of its largest worker, run as a real command."""
    code = (
        "import resource, sys\n"
        "from phasef_tui.cli import main\n"
        f"rc = main(['trace', 'import', {str(folder)!r}, '-o', {str(out)!r}, '--jobs', '2'])\n"
        "usage = resource.getrusage\n"
        "print(usage(resource.RUSAGE_SELF).ru_maxrss, usage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    parent, child = done.stdout.split()
    return int(parent), int(child)


def test_folder_of_1000_rollouts_imports_in_bounded_memory(tmp_path: Path) -> None:
    """Ten times the files must not need much more memory: records are streamed out file by file."""
    base = CODEX.read_text().splitlines()
    big_output = json.dumps(
        {
            "timestamp": "2025-10-14T16:03:00.000Z",
            "type": "response_item",
            "payload": {"type": "function_call_output", "call_id": "call_Qm1", "output": "x" * 60_000},
        }
    )
    text = "\n".join([*base[:10], big_output, *base[10:]]) + "\n"  # ~80 kB a file, 80 MB for the large folder
    small, large = tmp_path / "small", tmp_path / "large"
    for folder, count in ((small, 100), (large, 1000)):
        for i in range(count):
            day = folder / "sessions" / "2025" / "10" / f"{i % 28 + 1:02d}"
            day.mkdir(parents=True, exist_ok=True)
            (day / f"rollout-{i:04d}.jsonl").write_text(text)
    small_rss = _rss_of_folder_import(small, tmp_path / "small.jsonl")
    large_rss = _rss_of_folder_import(large, tmp_path / "large.jsonl")
    lines = (tmp_path / "large.jsonl").read_text().count("\n")
    assert lines == 10 * (tmp_path / "small.jsonl").read_text().count("\n") > 10_000
    # 900 more files (72 MB more input) (15 MB more output) may cost a few MiB of bookkeeping, not the records
    assert large_rss[0] < small_rss[0] + 10_000, (small_rss, large_rss)
    assert large_rss[1] < small_rss[1] + 10_000, (small_rss, large_rss)


def test_progress_line_counts_files_and_ends_the_line(tmp_path: Path) -> None:
    from pipeline.traces.importers.folders import count_units, terminal_progress

    folder = _mixed_folder(tmp_path)
    stream = io.StringIO()
    total = count_units(folder)
    summary = import_folder(folder, io.BytesIO(), jobs=1, progress=terminal_progress(stream), total=total)
    shown = stream.getvalue()
    assert total == summary.files == 18
    assert shown.count("\r") == total and shown.endswith("\n")
    assert (
        f"\r{total}/{total} files, {summary.episodes} episodes, {summary.ticks} ticks, 1 skipped, 2 bad lines\n"
        in shown
    )


def test_a_fifo_in_the_folder_is_not_opened(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "runs"
    folder.mkdir()
    shutil.copy(CODEX, folder / CODEX.name)
    os.mkfifo(folder / "pipe.jsonl")  # opening this for reading would block without a writer
    os.mkfifo(folder / "notes.md")
    summary = import_folder(folder, io.BytesIO(), jobs=1)
    assert (summary.files, summary.not_traces, summary.skipped) == (1, 2, [])


SHARED = Path("/work/shared/fixtures/foreign-traces")


@pytest.mark.skipif(not SHARED.exists(), reason="foreign trace fixtures not present")
def test_folder_of_swe_agent_openhands_tau_bench_inspect_and_mini_swe_agent_traces(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    shutil.copytree(SHARED, folder)
    out = io.BytesIO()
    summary = import_folder(folder, out, jobs=2)
    assert dict(summary.formats) == {
        "inspect-ai": 1,
        "mini-swe-agent": 1,
        "openhands": 1,
        "swe-agent": 1,
        "tau-bench": 2,
    }
    assert summary.skipped == [] and summary.bad_lines == [] and summary.not_traces == 1  # SOURCES.md
    alone = sum(len(import_trace(unit.path)[0]) for unit in iter_units(folder))
    assert summary.records == alone == out.getvalue().count(b"\n")


def test_problems_past_the_kept_number_are_counted_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.traces.importers import folders

    monkeypatch.setattr(folders, "KEPT", 3)
    folder = tmp_path / "junk"
    folder.mkdir()
    for i in range(5):
        (folder / f"junk-{i}.json").write_text(json.dumps({"n": i}))
    summary = import_folder(folder, io.BytesIO(), jobs=1)
    assert summary.skipped_count == 5 and [Path(b.file).name for b in summary.skipped] == [
        "junk-0.json",
        "junk-1.json",
        "junk-2.json",
    ]
    assert main(["trace", "import", str(folder), "-o", str(tmp_path / "out.jsonl"), "--jobs", "1"]) == 1
    assert "skipped files: 5; bad lines: 0" in capsys.readouterr().err


def test_claude_code_project_folder_with_subagents_in_the_newer_layout(tmp_path: Path) -> None:
    source = FOREIGN / "claude-code" / "-home-dev-shop-api"
    project = tmp_path / "-home-dev-shop-api"
    session = "7f3c2a91-5d0e-4b7a-9c61-2e8f4d1b6a30"
    subagents = project / session / "subagents"
    subagents.mkdir(parents=True)
    shutil.copy(source / f"{session}.jsonl", project)
    shutil.copy(source / "agent-3e9a41c7.jsonl", subagents)
    (subagents / "agent-3e9a41c7.meta.json").write_text(json.dumps({"agentType": "general-purpose"}))
    out = io.BytesIO()
    summary = import_folder(project, out, jobs=1)
    assert (dict(summary.formats), summary.not_traces, summary.skipped) == ({"claude-code": 2}, 1, [])
    starts = [json.loads(line) for line in out.getvalue().splitlines() if b'"episode_start"' in line]
    assert [s["episode"] for s in starts] == [session, f"{session}/agent-3e9a41c7"]
