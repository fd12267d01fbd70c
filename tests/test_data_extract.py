"""``extract-thrashing-journal`` on synthetic canonical traces with real recovery chains and damaged lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.bench.prompt import Action, render_action
from pipeline.data import extract_journal
from pipeline.jobs.context import StepFailed
from tests.test_data_support import TraceBuilder, make_ctx, read_jsonl, recovered_thrash, standard_trace


def run_extract(tmp_path: Path, traces: list[Path], **params: object) -> tuple[dict, Path]:
    ctx = make_ctx(tmp_path / "session", "extract-thrashing-journal", dict(params), inputs=traces)
    return extract_journal.run(ctx), ctx.artifacts_dir


def test_examples_follow_the_recovery_chains(tmp_path: Path) -> None:
    trace = standard_trace(episodes=2).write(tmp_path / "trace.jsonl")
    summary, out = run_extract(tmp_path, [trace])

    assert summary["examples"]["failure_recovery"] == 10  # per round: 3 thrash + 1 schema + 1 reflex
    assert summary["examples"]["golden"] == 6  # the clean episode's 3 progress/success ticks, twice
    assert summary["examples"]["reject"] == 4  # the death chain's 2 failed model ticks, twice
    assert summary["skipped_ticks"] == {
        "recovered chain without a recovering action": 4,  # the watchdog broke the lock: no action to learn
        "clean tick of a successful episode that had failures": 12,  # not golden: the episode was not clean
    }
    assert summary["chains"] == {"total": 10, "recovered": 8, "death": 2}
    assert summary["bad_lines"] == 0

    rows = read_jsonl(out / "examples.jsonl")
    thrash = [r for r in rows if r["episode"] == "thrash-1"]
    assert [r["provenance"]["tick_start"] for r in thrash] == [1, 2, 3]
    search = render_action(Action(act="search", arg="LIMIT_1"))
    check = render_action(Action(act="check", arg="checks/check_1.sh"))
    assert {r["completion"] for r in thrash} == {search}
    assert {r["rejected"] for r in thrash} == {check}
    records = read_jsonl(trace)
    failure_tick = next(r for r in records if r.get("episode") == "thrash-1" and r.get("tick") == 1)
    assert thrash[0]["messages"] == failure_tick["context"]  # exactly what the model was sent

    schema = next(r for r in rows if r["episode"] == "schema-0")
    assert schema["rejected"] == "{act: read, arg: src/mod0"
    assert schema["completion"] == '{"act":"read","arg":"src/mod0.py"}'
    assert schema["mechanism"] == "schema_repair" and schema["failure_class"] == "SchemaViolation"

    reflex = next(r for r in rows if r["episode"] == "reflex-0")
    assert reflex["completion"] == '{"act":"search","arg":"MAX_0"}'
    assert reflex["mechanism"] == "reflex"

    sha = extract_journal.file_sha256(trace)
    for row in rows:
        prov = row["provenance"]
        assert prov["source"] == str(trace) and prov["sha256"] == sha and prov["episode"] == row["episode"]
        assert prov["tick_start"] <= prov["tick_end"] and prov["lines"]
        assert all(records[line - 1]["episode"] == row["episode"] for line in prov["lines"])


def test_journal_holds_chains_thrash_deaths_and_file_summary(tmp_path: Path) -> None:
    trace = standard_trace(episodes=1).write(tmp_path / "trace.jsonl")
    summary, out = run_extract(tmp_path, [trace])
    journal = read_jsonl(out / "journal.jsonl")
    by_type: dict[str, list[dict]] = {}
    for entry in journal:
        by_type.setdefault(entry["type"], []).append(entry)
    chain = next(e for e in by_type["chain"] if e["chain_id"] == "thrash-0")
    assert chain["outcome"] == "recovered" and chain["ticks"] == [1, 2, 3, 4]
    assert chain["provenance"]["tick_start"] == 1 and chain["provenance"]["tick_end"] == 4
    assert [e["episode"] for e in by_type["thrash"]] == ["thrash-0"]
    assert [e["episode"] for e in by_type["death"]] == ["death-0"]
    (file_summary,) = by_type["file_summary"]
    assert file_summary["traps"] == {"deadlock": 2, "fatal": 2}
    assert file_summary["mttr_ticks"] == summary["mttr_ticks"]
    assert summary["thrash"] == 1 and summary["deaths"] == 1


def test_bad_lines_are_reported_and_the_rest_is_used(tmp_path: Path) -> None:
    clean = standard_trace(episodes=1).write(tmp_path / "clean.jsonl")
    damaged = standard_trace(episodes=1).write(tmp_path / "damaged.jsonl", damage=True)
    summary_clean, _ = run_extract(tmp_path / "a", [clean])
    summary, out = run_extract(tmp_path / "b", [damaged])

    assert summary["examples"] == {**summary_clean["examples"], "path": summary["examples"]["path"]}
    bad = read_jsonl(out / "bad_lines.jsonl")
    reasons = {b["line"]: b["reason"] for b in bad}
    assert all(b["file"] == str(damaged) for b in bad)
    assert "invalid JSON" in reasons[5]
    assert "invalid UTF-8" in reasons[6]
    assert "field 'outcome'" in reasons[7]
    last = max(reasons)
    assert "torn last line" in reasons[last]
    assert summary["bad_lines"] == 4
    assert any(s.startswith(f"{damaged}:6: ") for s in summary["bad_lines_shown"])


def test_a_duplicate_tick_is_a_bad_line_and_a_reused_episode_name_is_not(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.episode("same", "count-1", "count the lines of mod1", recovered_thrash(1), "success")
    b.episode("same", "count-2", "count the lines of mod2", recovered_thrash(2), "success")  # a later run
    b.records.insert(3, dict(b.records[2]))  # tick 1 written twice
    summary, out = run_extract(tmp_path, [b.write(tmp_path / "t.jsonl")])
    (bad,) = read_jsonl(out / "bad_lines.jsonl")
    assert bad["line"] == 4 and bad["reason"] == "duplicate tick 1 of episode 'same' (first at line 3)"
    rows = read_jsonl(out / "examples.jsonl")
    assert summary["examples"]["failure_recovery"] == 6 and len({r["id"] for r in rows}) == len(rows)


def corrupt_tick(trace: Path, episode: str, tick: int, change: dict[str, object]) -> None:
    lines = trace.read_text().split("\n")
    for i, line in enumerate(lines):
        record = json.loads(line) if line else {}
        if record.get("episode") == episode and record.get("tick") == tick:
            lines[i] = json.dumps({k: v for k, v in {**record, **change}.items() if v is not None})
    trace.write_text("\n".join(lines))


def test_a_tick_lost_to_a_bad_line_leaves_the_rest_of_its_chain(tmp_path: Path) -> None:
    trace = standard_trace(episodes=1).write(tmp_path / "trace.jsonl")
    corrupt_tick(trace, "thrash-0", 2, {"outcome": None})  # no tick for anyone: analysis and examples agree
    summary, out = run_extract(tmp_path, [trace])
    assert summary["bad_lines"] == 1 and "field 'outcome'" in summary["bad_lines_shown"][0]
    rows = [r for r in read_jsonl(out / "examples.jsonl") if r["episode"] == "thrash-0"]
    assert [r["provenance"]["tick_start"] for r in rows] == [1, 3]


def test_a_chain_whose_tick_only_analysis_could_read_gives_no_examples(tmp_path: Path) -> None:
    trace = standard_trace(episodes=1).write(tmp_path / "trace.jsonl")
    corrupt_tick(trace, "thrash-0", 2, {"context": "not a list of messages"})
    summary, _ = run_extract(tmp_path, [trace])
    assert summary["bad_lines"] == 1 and "field 'context'" in summary["bad_lines_shown"][0]
    assert summary["skipped_ticks"]["chain with ticks lost to bad lines"] == 1
    assert summary["examples"]["failure_recovery"] == 2  # the schema and reflex chains are still used


def test_several_traces_and_a_folder_input(tmp_path: Path) -> None:
    folder = tmp_path / "traces"
    standard_trace(TraceBuilder(run_id="r1"), episodes=1).write(folder / "a.jsonl")
    b = TraceBuilder(run_id="r2")
    b.episode("other", "count-9", "count the lines of mod9", recovered_thrash(9), "success")
    b.write(folder / "b.jsonl")
    summary, out = run_extract(tmp_path, [], input=str(folder))
    assert [Path(f["path"]).name for f in summary["files"]] == ["a.jsonl", "b.jsonl"]
    assert summary["examples"]["failure_recovery"] == 5 + 3
    sources = {Path(r["provenance"]["source"]).name for r in read_jsonl(out / "examples.jsonl")}
    assert sources == {"a.jsonl", "b.jsonl"}


def test_golden_policy_and_first_failure_only(tmp_path: Path) -> None:
    trace = standard_trace(episodes=1).write(tmp_path / "trace.jsonl")
    summary, _ = run_extract(tmp_path / "x", [trace], golden="none", include_attempts=False)
    assert summary["examples"]["golden"] == 0
    assert summary["examples"]["failure_recovery"] == 3  # one per recovered chain with an action
    summary, _ = run_extract(tmp_path / "y", [trace], golden="all")
    assert summary["examples"]["golden"] == 3


def test_params_and_missing_inputs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="golden"):
        run_extract(tmp_path, [tmp_path / "x.jsonl"], golden="sometimes")
    with pytest.raises(StepFailed, match="not found"):
        run_extract(tmp_path, [tmp_path / "missing.jsonl"])
    with pytest.raises(StepFailed, match=r"inputz.*Extra inputs"):
        run_extract(tmp_path, [], inputz="x")


def test_summary_is_json(tmp_path: Path) -> None:
    trace = standard_trace(episodes=1).write(tmp_path / "trace.jsonl")
    summary, _ = run_extract(tmp_path, [trace])
    assert json.loads(json.dumps(summary)) == summary
