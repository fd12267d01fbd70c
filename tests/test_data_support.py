"""Builders shared by the Stage C tests: synthetic canonical traces with real recovery chains, a tiny Qwen3 model,
and a step context laid out the way the engine lays it out. The tests at the bottom check the builders
themselves: every record they write must be a valid canonical record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.bench.prompt import (
    Action,
    PromptEvent,
    PromptState,
    build_messages,
    build_repair_messages,
    messages_chars,
    render_action,
)
from pipeline.jobs.context import StepContext
from pipeline.traces.schema import SCHEMA_VERSION, parse_record
from tests.step_helpers import step_context

ROOT = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SECRET_KEY = "AKIAABCDEFGHIJKLMNOP"
SECRET_EMAIL = "ops.oncall@example.com"


# -- synthetic traces ------------------------------------------------------------------------------------------
@dataclass
class Step:
    """One tick to write. ``action`` None with ``raw`` set is a schema violation."""

    action: dict[str, str] | None
    outcome: str = "ok"
    observation: str = ""
    raw: str | None = None
    error_class: str | None = None
    schema_error: str | None = None
    chain_id: str | None = None
    chain_role: str | None = None
    actor: str = "model"
    recovery: str | None = None
    progress: bool = False
    repair: tuple[str, str] | None = None
    """(bad output, error): the tick's context is the harness's schema-repair retry"""
    trap: str | None = None


@dataclass
class TraceBuilder:
    """Writes canonical records the way the harness does: contexts from ``build_messages``."""

    run_id: str = "run-test"
    records: list[dict[str, Any]] = field(default_factory=list)
    ts: float = 1_700_000_000.0

    def _base(self, kind: str, episode: str, task_id: str) -> dict[str, Any]:
        self.ts += 0.5
        return {
            "schema": SCHEMA_VERSION,
            "kind": kind,
            "run_id": self.run_id,
            "episode": episode,
            "task_id": task_id,
            "ts": self.ts,
        }

    def episode(self, episode: str, task_id: str, task: str, steps: list[Step], outcome: str) -> None:
        self.records.append({**self._base("episode_start", episode, task_id), "task": task, "model": "tiny"})
        events: list[PromptEvent] = []
        failures = streak = checks = 0
        for n, st in enumerate(steps):
            context: list[dict[str, str]] | None = None
            if st.actor in ("model", "reflex"):  # the harness records the reflex's prompt too (same builder)
                state = PromptState(tick=n, failures=failures, streak=streak, checks_run=checks)
                context = build_messages(task, state, events)
                if st.repair is not None:
                    context = build_repair_messages(context, *st.repair)
            raw = st.raw
            if raw is None and st.action is not None and st.actor == "model":
                raw = render_action(Action.model_validate(st.action))
            tick = {
                **self._base("tick", episode, task_id),
                "tick": n,
                "actor": st.actor,
                "latency_s": 0.2 if st.actor == "model" else None,
                "context_chars": messages_chars(context) if context else 0,
                "context": context,
                "raw_output": raw,
                "action": st.action,
                "schema_error": st.schema_error,
                "outcome": st.outcome,
                "error_class": st.error_class,
                "observation": st.observation,
                "trap": st.trap,
                "chain_id": st.chain_id,
                "chain_role": st.chain_role,
                "recovery": st.recovery,
                "progress": st.progress,
            }
            self.records.append(tick)
            failed = st.outcome in ("error", "timeout", "death")
            failures += failed
            streak = streak + 1 if failed else 0
            checks += 1 if st.action and st.action.get("act") == "check" else 0
            shown = render_action(Action.model_validate(st.action)) if st.action else "(invalid output)"
            events.append(PromptEvent(shown, st.error_class or st.outcome, st.observation))
        end = {**self._base("episode_end", episode, task_id), "outcome": outcome, "ticks": len(steps)}
        end["solved"] = outcome == "success"
        self.records.append(end)

    def write(self, path: Path, damage: bool = False) -> Path:
        """Write the trace; with ``damage``, add every kind of bad line the reader must survive."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            for i, record in enumerate(self.records):
                fh.write(json.dumps(record).encode() + b"\n")
                if damage and i == 3:
                    fh.write(b"this is not json\n")
                    fh.write(b'{"kind": "tick", "episode": "x\xff\xfe"}\n')
                    missing = {k: v for k, v in self.records[i].items() if k != "outcome"}
                    fh.write(json.dumps({**missing, "kind": "tick", "tick": 99}).encode() + b"\n")
            if damage:
                fh.write(b'{"schema": "phasef.dirty_trace/1", "kind": "tick", "epis')
        return path


def act(name: str, arg: str = "") -> dict[str, str]:
    return {"act": name, "arg": arg}


def recovered_thrash(i: int) -> list[Step]:
    """A check fails three times in a row (thrashing), then a search finds the answer."""
    chain = f"thrash-{i}"
    check = act("check", f"checks/check_{i}.sh")
    fail = f"FAIL: check_{i} expected {i + 4} got {i + 3}"
    return [
        Step(
            act("read", f"src/mod{i}.py"), observation=f"def f{i}(x):\n  return x + {i}\n{i + 3} lines", progress=True
        ),
        Step(check, "error", fail, error_class="CheckFailed", chain_id=chain, chain_role="failure"),
        Step(check, "error", fail, error_class="CheckFailed", chain_id=chain, chain_role="attempt"),
        Step(check, "error", fail, error_class="CheckFailed", chain_id=chain, chain_role="attempt"),
        Step(
            act("search", f"LIMIT_{i}"),
            observation=f"src/const.py:{i}: LIMIT_{i} = {i * 7}",
            chain_id=chain,
            chain_role="recovered",
            recovery="model",
            progress=True,
        ),
        Step(act("answer", str(i * 7)), "success", "correct"),
    ]


def schema_repair(i: int) -> list[Step]:
    """The model emits broken JSON; the harness's schema-repair retry gets a valid action out of it."""
    chain = f"schema-{i}"
    bad = "{act: read, arg: src/mod" + str(i)
    error = "not JSON: Expecting property name enclosed in double quotes at char 1"
    return [
        Step(act("list", "src"), observation=f"mod{i}.py\nconst.py", progress=True),
        Step(
            None,
            "error",
            error,
            raw=bad,
            error_class="SchemaViolation",
            schema_error=error,
            chain_id=chain,
            chain_role="failure",
        ),
        Step(
            act("read", f"src/mod{i}.py"),
            observation=f"{i + 10} lines",
            chain_id=chain,
            chain_role="recovered",
            recovery="schema_repair",
            repair=(bad, error),
            progress=True,
        ),
        Step(act("answer", str(i + 10)), "success", "correct"),
    ]


def reflex_recovery(i: int) -> list[Step]:
    """A wrong answer; the reflex (not the model) searches for the constant, which recovers."""
    chain = f"reflex-{i}"
    return [
        Step(
            act("answer", "0"), "error", "wrong answer", error_class="WrongAnswer", chain_id=chain, chain_role="failure"
        ),
        Step(
            act("search", f"MAX_{i}"),
            observation=f"src/const.py:2: MAX_{i} = {i * 3}",
            actor="reflex",
            chain_id=chain,
            chain_role="recovered",
            recovery="reflex",
            progress=True,
        ),
        Step(act("answer", str(i * 3)), "success", "correct"),
    ]


def reflex_multi_failure(i: int) -> list[Step]:
    """Several checks fail in a row (the model twice, then the reflex once); the reflex's next check passes.

    The passing check is the right action only in the state where the reflex ran it, not at the first failure.
    """
    chain = f"multi-{i}"
    check_a, check_b, check_c = (act("check", f"checks/{name}_{i}.sh") for name in ("a", "b", "c"))
    fail = f"FAIL: a_{i}"
    return [
        Step(check_a, "error", fail, error_class="CheckFailed", chain_id=chain, chain_role="failure"),
        Step(check_a, "error", fail, error_class="CheckFailed", chain_id=chain, chain_role="attempt"),
        Step(
            check_b,
            "timeout",
            f"TIMEOUT checks/b_{i}.sh",
            error_class="Timeout",
            actor="reflex",
            chain_id=chain,
            chain_role="attempt",
            recovery="reflex",
            progress=False,
        ),
        Step(
            check_c,
            observation=f"PASS c_{i}",
            actor="reflex",
            chain_id=chain,
            chain_role="recovered",
            recovery="reflex",
            progress=True,
        ),
        Step(act("answer", f"checks/c_{i}.sh"), "success", "correct"),
    ]


def death(i: int) -> list[Step]:
    """A check kills the episode: failed ticks no one recovered from (Reject examples)."""
    chain = f"death-{i}"
    check = act("check", f"checks/fatal_{i}.sh")
    return [
        Step(act("read", f"src/mod{i}.py"), observation="12 lines", progress=True),
        Step(check, "error", "segfault", error_class="Fatal", chain_id=chain, chain_role="failure", trap="fatal"),
        Step(check, "death", "killed", error_class="Fatal", chain_id=chain, chain_role="death", trap="fatal"),
    ]


def watchdog_deadlock(i: int) -> list[Step]:
    """A lock is never released; the watchdog breaks it (no action of its own: nothing to learn from)."""
    chain = f"deadlock-{i}"
    check = act("check", f"checks/lock_{i}.sh")
    return [
        Step(
            check, "error", "lock held", error_class="Deadlock", chain_id=chain, chain_role="failure", trap="deadlock"
        ),
        Step(
            check, "error", "lock held", error_class="Deadlock", chain_id=chain, chain_role="attempt", trap="deadlock"
        ),
        Step(None, "ok", "lock broken", actor="watchdog", chain_id=chain, chain_role="recovered", recovery="watchdog"),
        Step(act("answer", "done"), "success", "correct"),
    ]


def clean(i: int, secret: bool = False) -> list[Step]:
    """A clean success; with ``secret`` its first observation leaks a key and an email into the next context."""
    leak = f"\ncontact {SECRET_EMAIL} key {SECRET_KEY}" if secret else ""
    return [
        Step(act("list", "src"), observation=f"mod{i}.py{leak}", progress=True),
        Step(act("read", f"src/mod{i}.py"), observation=f"{i + 20} lines", progress=True),
        Step(act("answer", str(i + 20)), "success", "correct"),
    ]


def standard_trace(builder: TraceBuilder | None = None, episodes: int = 1) -> TraceBuilder:
    """Every scenario, ``episodes`` times over (each with its own numbers so that no two rows are the same)."""
    b = builder or TraceBuilder()
    for k in range(episodes):
        b.episode(f"thrash-{k}", f"count-{k}", f"count the lines of mod{k}", recovered_thrash(k), "success")
        b.episode(f"schema-{k}", f"read-{k}", f"read mod{k}", schema_repair(k), "success")
        b.episode(f"reflex-{k}", f"const-{k}", f"find the value of MAX_{k}", reflex_recovery(k), "success")
        b.episode(f"multi-{k}", f"pass-{k}", f"find the passing check {k}", reflex_multi_failure(k), "success")
        b.episode(f"death-{k}", f"fatal-{k}", f"run fatal check {k}", death(k), "death")
        b.episode(f"lock-{k}", f"lock-{k}", f"run lock check {k}", watchdog_deadlock(k), "success")
        b.episode(f"clean-{k}", f"list-{k}", f"list and read mod{k}", clean(k, secret=k == 0), "success")
    return b


# -- step contexts ---------------------------------------------------------------------------------------------
def make_ctx(
    session: Path, step: str, params: dict[str, Any] | None = None, inputs: list[Path] | None = None
) -> StepContext:
    return step_context(session, "C", step, params or {}, create=True, session_id="s-test", inputs=inputs or [])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# -- a tiny model ----------------------------------------------------------------------------------------------
def make_tokenizer(out: Path, corpus: list[str]) -> Path:
    """A byte-level BPE tokenizer trained on ``corpus``, with a chat template and an eos token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<unk>",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


def trace_corpus(builder: TraceBuilder) -> list[str]:
    texts = []
    for record in builder.records:
        for message in record.get("context") or []:
            texts.append(message["content"])
        if record.get("raw_output"):
            texts.append(record["raw_output"])
    return texts


def make_tiny_model(out: Path, corpus: list[str], seed: int = 0) -> Path:
    """A random-init Qwen3 (hidden 64, 2 blocks) that ``mlx_lm`` loads like any model folder."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models.qwen3 import Model, ModelArgs
    from tokenizers import Tokenizer

    make_tokenizer(out, corpus)
    vocab = Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size()
    config = {
        "model_type": "qwen3",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-6,
        "vocab_size": vocab,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
        "rope_theta": 10000.0,
    }
    mx.random.seed(seed)
    model = Model(ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (out / "config.json").write_text(json.dumps(config))
    return out


# -- the builders themselves -----------------------------------------------------------------------------------
def test_synthetic_trace_is_canonical(tmp_path: Path) -> None:
    builder = standard_trace(episodes=2)
    path = builder.write(tmp_path / "trace.jsonl")
    kinds = []
    for line in path.read_text().splitlines():
        record = parse_record(json.loads(line))
        kinds.append(record.kind)
    assert kinds.count("episode_start") == kinds.count("episode_end") == 14
    roles = {r.get("chain_role") for r in builder.records if r["kind"] == "tick"}
    assert {"failure", "attempt", "recovered", "death"} <= roles


def test_synthetic_contexts_are_what_the_harness_sends() -> None:
    builder = TraceBuilder()
    builder.episode("e", "t", "count the lines of mod1", recovered_thrash(1), "success")
    ticks = [r for r in builder.records if r["kind"] == "tick"]
    first = ticks[0]["context"]
    assert first == build_messages("count the lines of mod1", PromptState(0, 0, 0, 0), [])
    assert ticks[2]["context"][1]["content"].startswith("TASK: count the lines of mod1\nSTATE: tick 2 | failures 1")


def test_damaged_trace_has_every_kind_of_bad_line(tmp_path: Path) -> None:
    path = standard_trace().write(tmp_path / "t.jsonl", damage=True)
    raw = path.read_bytes()
    assert b"\xff\xfe" in raw and not raw.endswith(b"\n") and b"this is not json" in raw
    lines = raw.split(b"\n")
    missing_outcome = json.loads(lines[6])
    assert missing_outcome["kind"] == "tick" and "outcome" not in missing_outcome
