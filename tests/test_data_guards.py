"""The dataset guards: scrub, exact token lengths, ``guard-sft-dataset`` and ``guard-sft-split``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.bench.prompt import PromptEvent, PromptState, build_messages, build_repair_messages
from pipeline.data import guard_dataset, guard_split
from pipeline.data.rows import Example, Provenance
from pipeline.data.scrub import scrub_text, scrub_value
from pipeline.data.token_length import ChatTokenCounter, TokenizerUnavailable
from pipeline.jobs.context import StepFailed
from tests.test_data_support import make_ctx, make_tokenizer, read_jsonl, standard_trace, trace_corpus

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1c7+9z\nabc==\n-----END RSA PRIVATE KEY-----"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tok"), trace_corpus(standard_trace(episodes=2)))


def context(i: int, observation: str = "") -> list[dict[str, str]]:
    events = [PromptEvent('{"act":"check","arg":"c.sh"}', "CheckFailed", observation or f"FAIL: case {i}")]
    return build_messages(f"count the lines of mod{i}", PromptState(1, 1, 1, 1), events)


def example(
    i: int,
    label: str = "failure_recovery",
    episode: str | None = None,
    task: str | None = None,
    messages: list[dict[str, str]] | None = None,
    completion: str | None = None,
    rejected: str | None = None,
) -> dict[str, Any]:
    episode = episode or f"ep-{i}"
    if completion is None and label != "reject":
        completion = json.dumps({"act": "search", "arg": f"LIMIT_{i}"}, separators=(",", ":"), sort_keys=True)
    if rejected is None and label != "golden":
        rejected = '{"act":"check","arg":"c.sh"}'
    row = Example(
        id=f"ex-{i}-{label}",
        label=label,  # type: ignore[arg-type]
        episode=episode,
        task_id=task if task is not None else f"task-{i}",
        messages=messages or context(i),  # type: ignore[arg-type]
        completion=completion,
        rejected=rejected,
        failure_class="CheckFailed" if label != "golden" else None,
        provenance=Provenance(
            source="trace.jsonl", sha256="ab" * 32, episode=episode, tick_start=1, tick_end=2, lines=[3, 4]
        ),
    )
    return row.model_dump(mode="json")


def write_rows(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- scrub -----------------------------------------------------------------------------------------------------
def test_every_secret_shape_is_scrubbed_and_counted() -> None:
    text = (
        "key sk-proj-abcdefghijklmnopqrstuvwx and AKIAABCDEFGHIJKLMNOP, token ghp_" + "a" * 36 + "\n"
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig\n"
        f"mail ops.oncall@example.com\n{PEM}\nend"
    )
    counts: Counter[str] = Counter()
    out = scrub_text(text, counts)
    assert counts == {
        "openai_key": 1,
        "aws_access_key": 1,
        "github_token": 1,
        "bearer_token": 1,
        "email": 1,
        "pem_private_key": 1,
    }
    for secret in ("sk-proj", "AKIA", "ghp_", "eyJhbGci", "example.com", "MIIEpA", "PRIVATE KEY"):
        assert secret not in out
    assert out.startswith("key [REDACTED:openai_key] and [REDACTED:aws_access_key]")
    assert out.endswith("[REDACTED:pem_private_key]\nend")


def test_ordinary_text_is_left_alone() -> None:
    text = 'TASK: ask-for sk-1 task-42 AKIA12 user@host {"act":"read","arg":"src/mod1.py"} bearer of news'
    counts: Counter[str] = Counter()
    assert scrub_text(text, counts) == text
    assert not counts


def test_scrub_value_walks_nested_rows() -> None:
    counts: Counter[str] = Counter()
    row = {"messages": [{"role": "user", "content": "mail a.b@example.org"}], "n": 3}
    assert scrub_value(row, counts) == {"messages": [{"role": "user", "content": "mail [REDACTED:email]"}], "n": 3}
    assert counts == {"email": 1}


# -- token lengths ---------------------------------------------------------------------------------------------
def test_token_count_matches_the_trainers_tokenizer(tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    counter = ChatTokenCounter(tokenizer_dir)
    repair = build_repair_messages(context(3), "{act: read", "not JSON: Expecting property name")
    for messages in (context(1), [*context(2), {"role": "assistant", "content": '{"act":"list","arg":"src"}'}], repair):
        for generation in (False, True):
            expected = reference.apply_chat_template(messages, add_generation_prompt=generation, tokenize=True)
            if isinstance(expected, dict) or hasattr(expected, "keys"):
                expected = expected["input_ids"]
            assert counter.count(messages, add_generation_prompt=generation) == len(expected)


RICH_TEMPLATE = (
    "{%- set ns = namespace(system=none) -%}"
    "{%- if messages[0]['role'] == 'system' %}{% set ns.system = messages[0]['content'] %}{% endif -%}"
    "{{ bos_token }}{% if ns.system %}<|im_start|>system\n{{ ns.system | trim }}<|im_end|>\n{% endif %}"
    "{%- for m in messages %}{% if m['role'] == 'system' %}{% continue %}{% endif %}"
    "{%- if m['role'] not in ['user', 'assistant'] %}{{ raise_exception('bad role ' + m['role']) }}{% endif %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}{% if loop.last and m.role == 'assistant' %}{{ eos_token }}"
    "{% else %}<|im_end|>{% endif %}\n{% endfor -%}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{{ {'mode': 'json'} | tojson }}{% endif %}"
)


def test_token_count_matches_with_a_richer_template(tmp_path: Path, tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    rich = tmp_path / "rich"
    rich.mkdir()
    (rich / "tokenizer.json").write_bytes((tokenizer_dir / "tokenizer.json").read_bytes())
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    config.update(chat_template=RICH_TEMPLATE, bos_token="<|endoftext|>")
    (rich / "tokenizer_config.json").write_text(json.dumps(config))
    reference = AutoTokenizer.from_pretrained(str(rich))
    counter = ChatTokenCounter(rich)
    messages = [*context(4), {"role": "assistant", "content": '{"act":"read","arg":"src/mod4.py"}'}]
    for chat, generation in ((messages, False), (messages[:-1], True)):
        expected = reference.apply_chat_template(chat, add_generation_prompt=generation, tokenize=False)
        assert counter.render(chat, add_generation_prompt=generation) == expected
        ids = reference.apply_chat_template(chat, add_generation_prompt=generation, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert counter.count(chat, add_generation_prompt=generation) == len(ids)


def test_missing_tokenizer_or_template_is_named(tmp_path: Path, tokenizer_dir: Path) -> None:
    with pytest.raises(TokenizerUnavailable, match=r"tokenizer\.json: no such file"):
        ChatTokenCounter(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "tokenizer.json").write_bytes((tokenizer_dir / "tokenizer.json").read_bytes())
    with pytest.raises(TokenizerUnavailable, match="no chat_template"):
        ChatTokenCounter(bare)


# -- guard-sft-dataset -----------------------------------------------------------------------------------------
def run_guard(tmp_path: Path, rows: list[Any], tokenizer: Path, **params: Any) -> tuple[dict[str, Any], Path]:
    examples = write_rows(tmp_path / "in" / "examples.jsonl", rows)
    ctx = make_ctx(
        tmp_path / "session", "guard-sft-dataset", {"tokenizer": str(tokenizer), **params}, inputs=[examples.parent]
    )
    return guard_dataset.run(ctx), ctx.artifacts_dir


def test_guard_keeps_clean_rows_and_rejects_the_rest_with_reasons(tmp_path: Path, tokenizer_dir: Path) -> None:
    secret = example(5, messages=context(5, observation=f"leaked ops@example.com and AKIAABCDEFGHIJKLMNOP\n{PEM}"))
    duplicate = {**example(1), "id": "another-id"}  # same content as row 1, other id and provenance
    duplicate["provenance"] = {**duplicate["provenance"], "tick_start": 7}
    spaced = example(2)
    spaced["messages"][1]["content"] = spaced["messages"][1]["content"].replace(" ", "  ")  # still a duplicate
    spaced["id"] = "spaced"
    no_provenance = {k: v for k, v in example(6).items() if k != "provenance"}
    not_action = example(7, completion='{"act":"fly","arg":"away"}')
    huge = example(8, messages=context(8, observation="word " * 400))
    golden = example(9, label="golden")
    rows = [example(1), example(2), duplicate, spaced, secret, no_provenance, "{torn", not_action, huge, golden]
    summary, out = run_guard(tmp_path, rows, tokenizer_dir, max_tokens=300)

    kept = read_jsonl(out / "dataset.jsonl")
    ids = ["ex-1-failure_recovery", "ex-2-failure_recovery", "ex-5-failure_recovery", "ex-9-golden"]
    assert [r["id"] for r in kept] == ids
    assert summary["kept"] == 4 and summary["rows_in"] == 9
    assert summary["kept_by_label"] == {"golden": 1, "failure_recovery": 3, "reject": 0}
    reasons = {"duplicate": 2, "schema": 1, "unreadable": 1, "bad_completion": 1, "too_long": 1}
    assert summary["rejected_by_reason"] == reasons
    assert all(r["tokens"] and r["tokens"] <= 300 for r in kept)

    leaked = kept[2]["messages"][1]["content"]
    assert "[REDACTED:email]" in leaked and "[REDACTED:aws_access_key]" in leaked
    assert "[REDACTED:pem_private_key]" in leaked and "PRIVATE KEY" not in leaked
    assert summary["scrubbed"]["email"] == 1 and summary["scrubbed"]["pem_private_key"] == 1
    assert summary["rows_scrubbed"] == 1

    rejects = read_jsonl(out / "rejects.jsonl")
    codes = Counter(r["code"] for r in rejects)
    assert codes["duplicate"] == 2 and codes["schema"] == 1 and codes["bad_completion"] == 1
    schema_reject = next(r for r in rejects if r["code"] == "schema")
    assert schema_reject["line"] == 6 and "provenance" in schema_reject["reason"]
    assert "the harness rejects it" in next(r for r in rejects if r["code"] == "bad_completion")["reason"]
    bad = {b["line"]: b["reason"] for b in read_jsonl(out / "bad_lines.jsonl")}
    assert set(bad) == {6, 7} and "field 'provenance'" in bad[6] and "invalid JSON" in bad[7]


def test_too_long_is_measured_in_target_tokens(tmp_path: Path, tokenizer_dir: Path) -> None:
    counter = ChatTokenCounter(tokenizer_dir)
    row = example(1)
    full = [*row["messages"], {"role": "assistant", "content": row["completion"]}]
    tokens = max(
        counter.count(full), counter.count([*row["messages"], {"role": "assistant", "content": row["rejected"]}])
    )
    summary, _ = run_guard(tmp_path / "a", [row], tokenizer_dir, max_tokens=tokens)
    assert summary["kept"] == 1 and summary["tokens"]["max"] == tokens
    summary, out = run_guard(tmp_path / "b", [row], tokenizer_dir, max_tokens=tokens - 1)
    assert summary["kept"] == 0
    (reject,) = read_jsonl(out / "rejects.jsonl")
    assert reject["code"] == "too_long" and reject["reason"] == f"{tokens} tokens > max_tokens {tokens - 1}"


def test_secrets_never_reach_the_rejects_file(tmp_path: Path, tokenizer_dir: Path) -> None:
    row = example(1, messages=context(1, observation="key AKIAABCDEFGHIJKLMNOP"))
    bad = {**row, "label": "mystery"}
    _, out = run_guard(tmp_path, [row, {**row, "id": "dup"}, bad], tokenizer_dir)
    text = (out / "rejects.jsonl").read_text() + (out / "dataset.jsonl").read_text()
    assert "AKIAABCDEFGHIJKLMNOP" not in text and text.count("[REDACTED:aws_access_key]") == 3


def test_guard_without_tokenizer_fails_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=r"tokenizer\.json: no such file"):
        run_guard(tmp_path, [example(1)], tmp_path / "no-model")


# -- guard-sft-split -------------------------------------------------------------------------------------------
def split_rows(episodes: int, per_episode: int = 3, tasks: int | None = None) -> list[dict[str, Any]]:
    rows = []
    n = 0
    for e in range(episodes):
        for _ in range(per_episode):
            task = f"task-{e % tasks}" if tasks else f"task-{e}"
            rows.append(example(n, episode=f"ep-{e}", task=task))
            n += 1
        rows.append(example(n, label="reject", episode=f"ep-{e}", task=f"task-{e % tasks}" if tasks else None))
        n += 1
    return rows


def run_split(tmp_path: Path, rows: list[dict[str, Any]], **params: Any) -> tuple[dict[str, Any], Path]:
    data = write_rows(tmp_path / "guard" / "dataset.jsonl", rows)
    ctx = make_ctx(tmp_path / "session", "guard-sft-split", params, inputs=[data.parent])
    return guard_split.run(ctx), ctx.artifacts_dir


def split_of(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {s: read_jsonl(out / f"{s}.jsonl") for s in ("train", "valid", "test")}


def test_no_episode_in_two_splits_and_every_row_kept(tmp_path: Path) -> None:
    rows = split_rows(episodes=12)
    summary, out = run_split(tmp_path, rows, batch_size=2, seed=3)
    splits = split_of(out)
    episodes = {s: {r["episode"] for r in rs} for s, rs in splits.items()}
    assert not (episodes["train"] & episodes["valid"]) and not (episodes["train"] & episodes["test"])
    assert not (episodes["valid"] & episodes["test"])
    assert sorted(r["id"] for rs in splits.values() for r in rs) == sorted(r["id"] for r in rows)
    for s in ("train", "valid", "test"):
        assert summary["counts"][s]["trainable"] >= 2
        assert all(r["provenance"]["sha256"] == "ab" * 32 for r in splits[s])
    assert summary["counts"]["train"]["trainable"] > summary["counts"]["valid"]["trainable"]
    manifest = json.loads((out / "split_manifest.json").read_text())
    assert set(manifest["groups"]["valid"]) == {f"episode:{e}" for e in episodes["valid"]}


def test_split_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    rows = split_rows(episodes=20, per_episode=2)
    _, a = run_split(tmp_path / "a", rows, batch_size=2, seed=7)
    _, b = run_split(tmp_path / "b", rows, batch_size=2, seed=7)
    assert split_of(a) == split_of(b)
    seeds = set()
    for seed in range(6):
        _, c = run_split(tmp_path / f"s{seed}", rows, batch_size=2, seed=seed)
        seeds.add(tuple(sorted(r["episode"] for r in split_of(c)["valid"])))
    assert len(seeds) > 1  # the seed matters


def test_split_by_task_keeps_tasks_apart(tmp_path: Path) -> None:
    rows = split_rows(episodes=16, per_episode=2, tasks=8)  # two episodes per task
    summary, out = run_split(tmp_path, rows, batch_size=2, by="task")
    tasks = {s: {r["task_id"] for r in rs} for s, rs in split_of(out).items()}
    assert not (tasks["train"] & tasks["valid"]) and not (tasks["train"] & tasks["test"])
    assert not (tasks["valid"] & tasks["test"])
    assert summary["by"] == "task" and summary["groups"] == 8


def test_too_few_rows_for_a_batch_fails_naming_counts(tmp_path: Path) -> None:
    rows = split_rows(episodes=3, per_episode=2)
    with pytest.raises(StepFailed) as err:
        run_split(tmp_path, rows, batch_size=4)
    message = str(err.value)
    assert "fewer than batch_size 4" in message and "train=" in message and "valid=" in message
    assert "3 episode group(s)" in message
