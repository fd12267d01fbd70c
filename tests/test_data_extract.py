"""``extract-thrashing-journal`` on synthetic canonical traces with real recovery chains and damaged lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.bench.prompt import Action, PromptEvent, PromptSettings, PromptState, build_messages, render_action
from pipeline.data import extract_journal, sft_dpo_recipe
from pipeline.data.rows import Example
from pipeline.jobs.context import StepFailed
from tests.test_data_support import (
    TraceBuilder,
    make_ctx,
    read_jsonl,
    recovered_thrash,
    reflex_multi_failure,
    standard_trace,
)


def run_extract(tmp_path: Path, traces: list[Path], **params: object) -> tuple[dict, Path]:
    ctx = make_ctx(tmp_path / "session", "extract-thrashing-journal", dict(params), inputs=traces)
    return extract_journal.run(ctx), ctx.artifacts_dir


def tick_record(records: list[dict], episode: str, tick: int) -> dict:
    return next(r for r in records if r.get("episode") == episode and r.get("tick") == tick)


def test_examples_follow_the_recovery_chains(tmp_path: Path) -> None:
    trace = standard_trace(episodes=2).write(tmp_path / "trace.jsonl")
    summary, out = run_extract(tmp_path, [trace])

    assert summary["examples"]["failure_recovery"] == 8  # one per recovered chain with an action, per round 4
    assert summary["failure_recovery_pairing"] == {"recovering_context": 8, "failure_context": 0}
    assert summary["examples"]["golden"] == 6  # the clean episode's 3 progress/success ticks, twice
    assert summary["examples"]["reject"] == 4  # the death chain's 2 failed model ticks, twice
    assert summary["skipped_ticks"] == {
        "recovered chain without a recovering action": 4,  # the watchdog broke the lock: no action to learn
        "clean tick of a successful episode that had failures": 14,  # not golden: the episode was not clean
        # thrash 3 + schema 1 + reflex 1 + multi 3 failed ticks per round: their recovery is learnt where it acted
        "failed tick of a recovered chain: paired at the recovering tick's own context": 16,
    }
    assert summary["chains"] == {"total": 12, "recovered": 10, "death": 2}
    assert summary["bad_lines"] == 0

    rows = read_jsonl(out / "examples.jsonl")
    records = read_jsonl(trace)
    (thrash,) = [r for r in rows if r["episode"] == "thrash-1"]
    search = render_action(Action(act="search", arg="LIMIT_1"))
    check = render_action(Action(act="check", arg="checks/check_1.sh"))
    assert (thrash["completion"], thrash["rejected"]) == (search, check)
    assert thrash["messages"] == tick_record(records, "thrash-1", 4)["context"]  # where the search was made
    prov = thrash["provenance"]
    assert (prov["pairing"], prov["prompt_tick"], prov["rejected_tick"]) == ("recovering_context", 4, 3)
    assert (prov["tick_start"], prov["tick_end"]) == (3, 4)

    schema = next(r for r in rows if r["episode"] == "schema-0")
    assert schema["rejected"] == "{act: read, arg: src/mod0"
    assert schema["completion"] == '{"act":"read","arg":"src/mod0.py"}'
    assert schema["messages"] == tick_record(records, "schema-0", 2)["context"]  # the repair retry's prompt
    assert schema["mechanism"] == "schema_repair" and schema["failure_class"] == "SchemaViolation"

    reflex = next(r for r in rows if r["episode"] == "reflex-0")
    assert (
        reflex["completion"] == '{"act":"search","arg":"MAX_0"}' and reflex["rejected"] == '{"act":"answer","arg":"0"}'
    )
    assert reflex["mechanism"] == "reflex" and reflex["failure_class"] == "WrongAnswer"
    assert reflex["messages"] == tick_record(records, "reflex-0", 1)["context"]

    sha = extract_journal.file_sha256(trace)
    for row in rows:
        prov = row["provenance"]
        assert prov["source"] == str(trace) and prov["sha256"] == sha and prov["episode"] == row["episode"]
        assert prov["tick_start"] <= prov["tick_end"] and prov["lines"]
        assert all(records[line - 1]["episode"] == row["episode"] for line in prov["lines"])


MULTI_TASK = "find the passing check 5"


def multi_failure_trace(path: Path) -> tuple[Path, list[dict]]:
    """One episode: the model fails check a twice, the reflex's check b hangs, its check c passes."""
    b = TraceBuilder()
    b.episode("multi", "pass-5", MULTI_TASK, reflex_multi_failure(5), "success")
    return b.write(path), [r for r in b.records if r["kind"] == "tick"]


def expected_prompt(tick: int, failures: int, streak: int, checks: int, past: list[dict]) -> list[dict[str, str]]:
    """The harness's prompt for one tick, rebuilt from scratch with the harness's own builder."""
    events = [
        PromptEvent(
            render_action(Action.model_validate(r["action"])), r["error_class"] or r["outcome"], r["observation"]
        )
        for r in past
    ]
    return build_messages(MULTI_TASK, PromptState(tick, failures, streak, checks), events, PromptSettings())


def test_a_multi_failure_chain_pairs_the_expert_action_with_its_own_context(tmp_path: Path) -> None:
    trace, ticks = multi_failure_trace(tmp_path / "multi.jsonl")
    summary, out = run_extract(tmp_path, [trace])
    assert summary["failure_recovery_pairing"] == {"recovering_context": 1, "failure_context": 0}
    rows = read_jsonl(out / "examples.jsonl")
    assert [r["label"] for r in rows] == ["failure_recovery"]
    (row,) = rows
    # prompt: the reflex's own tick 3 (after 3 failures, 3 checks run), exactly what the model would be sent there
    assert row["messages"] == ticks[3]["context"] == expected_prompt(3, 3, 3, 3, ticks[:3])
    assert row["messages"][1]["content"].startswith(f"TASK: {MULTI_TASK}\nSTATE: tick 3 | failures 3 | streak 3")
    # target: the reflex's own action there; rejected: the model's failing output just before the takeover
    assert row["completion"] == '{"act":"check","arg":"checks/c_5.sh"}'
    assert row["rejected"] == ticks[1]["raw_output"] == '{"act":"check","arg":"checks/a_5.sh"}'
    assert row["mechanism"] == "reflex" and row["failure_class"] == "CheckFailed"
    prov = row["provenance"]
    assert prov["pairing"] == "recovering_context" and (prov["prompt_tick"], prov["rejected_tick"]) == (3, 1)
    assert (prov["tick_start"], prov["tick_end"], prov["lines"]) == (1, 3, [3, 5]) and prov["chain_id"] == "multi-5"
    # the failed ticks' prompts are never paired with the action that only later became right
    assert all(row["messages"] != t["context"] for t in ticks[:3])
    assert summary["skipped_ticks"] == {
        "failed tick of a recovered chain: paired at the recovering tick's own context": 3,
        "clean tick of a successful episode that had failures": 1,  # the model's answer after the recovery
    }

    # the same pair feeds SFT (prompt + the expert's action) and DPO (chosen = expert, rejected = the model)
    example = Example.model_validate(row)
    sft, dpo, mix = sft_dpo_recipe.build_split([example], True, sft_dpo_recipe.RecipeParams())
    assert sft[0]["messages"] == [*ticks[3]["context"], {"role": "assistant", "content": row["completion"]}]
    assert (dpo[0]["prompt"], dpo[0]["chosen"], dpo[0]["rejected"]) == (
        ticks[3]["context"],
        row["completion"],
        row["rejected"],
    )
    assert mix["sft"]["failure_recovery_pairing"] == {"recovering_context": 1}


def test_without_a_recovering_context_the_failed_ticks_are_the_prompts(tmp_path: Path) -> None:
    """Fallback for traces that did not record the recovering actor's prompt (e.g. imported ones)."""
    trace, ticks = multi_failure_trace(tmp_path / "multi.jsonl")
    corrupt_tick(trace, "multi", 3, {"context": None, "context_chars": 0})
    summary, out = run_extract(tmp_path, [trace])
    assert summary["failure_recovery_pairing"] == {"recovering_context": 0, "failure_context": 2}
    assert summary["skipped_ticks"] == {
        "failed tick: not a model turn (actor reflex)": 1,  # the reflex's hung check is not the model's failure
        "clean tick of a successful episode that had failures": 1,
    }
    rows = read_jsonl(out / "examples.jsonl")
    assert [(r["messages"], r["completion"], r["rejected"]) for r in rows] == [
        (ticks[n]["context"], '{"act":"check","arg":"checks/c_5.sh"}', '{"act":"check","arg":"checks/a_5.sh"}')
        for n in (0, 1)
    ]
    assert [r["provenance"]["pairing"] for r in rows] == ["failure_context"] * 2
    assert [(r["provenance"]["prompt_tick"], r["provenance"]["tick_end"]) for r in rows] == [(0, 3), (1, 3)]
    summary, out = run_extract(tmp_path / "first", [trace], include_attempts=False)  # only the first failure
    assert [r["messages"] for r in read_jsonl(out / "examples.jsonl")] == [ticks[0]["context"]]


def test_a_recovering_tick_without_progress_or_model_output_is_counted_not_paired(tmp_path: Path) -> None:
    trace, _ = multi_failure_trace(tmp_path / "a.jsonl")
    corrupt_tick(trace, "multi", 3, {"progress": False})
    summary, out = run_extract(tmp_path / "a", [trace])
    assert summary["examples"]["failure_recovery"] == 0 and not read_jsonl(out / "examples.jsonl")
    assert summary["skipped_ticks"]["recovered chain: the recovering tick made no progress"] == 1

    trace, _ = multi_failure_trace(tmp_path / "b.jsonl")
    for n in (0, 1):
        corrupt_tick(trace, "multi", n, {"raw_output": None, "action": None, "outcome": "timeout"})
    summary, _ = run_extract(tmp_path / "b", [trace])
    assert summary["examples"]["failure_recovery"] == 0
    assert summary["skipped_ticks"]["recovered chain: no failed model output to reject"] == 1


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
    assert summary["examples"]["failure_recovery"] == 2 and len({r["id"] for r in rows}) == len(rows)


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
    assert [(r["provenance"]["prompt_tick"], r["provenance"]["rejected_tick"]) for r in rows] == [(4, 3)]


def test_a_chain_whose_tick_only_analysis_could_read_gives_no_examples(tmp_path: Path) -> None:
    trace = standard_trace(episodes=1).write(tmp_path / "trace.jsonl")
    corrupt_tick(trace, "thrash-0", 2, {"context": "not a list of messages"})
    summary, _ = run_extract(tmp_path, [trace])
    assert summary["bad_lines"] == 1 and "field 'context'" in summary["bad_lines_shown"][0]
    assert summary["skipped_ticks"]["chain with ticks lost to bad lines"] == 1
    assert summary["examples"]["failure_recovery"] == 3  # the schema, reflex and multi chains are still used


def test_several_traces_and_a_folder_input(tmp_path: Path) -> None:
    folder = tmp_path / "traces"
    standard_trace(TraceBuilder(run_id="r1"), episodes=1).write(folder / "a.jsonl")
    b = TraceBuilder(run_id="r2")
    b.episode("other", "count-9", "count the lines of mod9", recovered_thrash(9), "success")
    b.write(folder / "b.jsonl")
    summary, out = run_extract(tmp_path, [], input=str(folder))
    assert [Path(f["path"]).name for f in summary["files"]] == ["a.jsonl", "b.jsonl"]
    assert summary["examples"]["failure_recovery"] == 4 + 1
    sources = {Path(r["provenance"]["source"]).name for r in read_jsonl(out / "examples.jsonl")}
    assert sources == {"a.jsonl", "b.jsonl"}


def test_golden_policy_and_first_failure_only(tmp_path: Path) -> None:
    trace = standard_trace(episodes=1).write(tmp_path / "trace.jsonl")
    summary, _ = run_extract(tmp_path / "x", [trace], golden="none", include_attempts=False)
    assert summary["examples"]["golden"] == 0
    assert summary["examples"]["failure_recovery"] == 4  # one per recovered chain with an action
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
