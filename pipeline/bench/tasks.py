"""Tasks generated from the target's real facts, fixed by a seed, with the traps each episode arms.

The task set is a pure function of (seed, episode count, enabled traps, target sources): two runs with the same
inputs get the same tasks and the same ``task_set_hash``, which evaluation reports carry so that a comparison of a
baseline with a fine-tuned model refuses reports that did not face the same tasks.

Kinds: which file defines a function, how many lines a file has, what a constant equals, and which of a few check
scripts passes (the checks really run). Traps ride on the kinds that meet them: hang, flaky, fatal and deadlock on
the check task, the context bomb on counting the lines of a file too large for any prompt.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from pipeline.bench.target import ConstantFact, FunctionFact, TargetTree
from pipeline.traces.schema import TrapKind

TaskKind = Literal["defines_function", "line_count", "constant_value", "passing_check"]
ALL_TRAPS: tuple[TrapKind, ...] = ("hang", "deadlock", "flaky", "context_bomb", "fatal")
CHECKS_DIR = "checks"
CHECK_COUNT = 4
UNSAFE_CHECK_MODULES = ("cli", "__main__", "codec")
"""modules whose import has side effects or heavy dependencies: never imported by a check"""

# One pass of this plan covers every trap; it is shuffled by the seed and repeated for longer runs.
_PLAN: tuple[tuple[TaskKind, tuple[TrapKind, ...]], ...] = (
    ("passing_check", ("fatal",)),
    ("line_count", ("context_bomb",)),
    ("passing_check", ("hang",)),
    ("passing_check", ("deadlock", "flaky")),
    ("defines_function", ()),
    ("passing_check", ("flaky",)),
    ("constant_value", ()),
    ("passing_check", ("deadlock", "hang")),
    ("line_count", ()),
    ("passing_check", ("fatal", "flaky")),
)


class CheckSpec(BaseModel):
    """One check script: asserts that ``module.function`` takes ``claimed`` parameters."""

    path: str
    module: str
    function: str
    claimed: int
    passes: bool
    trap: TrapKind | None = None


class Task(BaseModel):
    id: str
    kind: TaskKind
    statement: str
    answer: str
    """the canonical answer (what the scripted expert answers)"""
    subject: str
    """the function, file or constant the task is about"""
    file: str | None = None
    value_repr: str | None = None
    """for a constant: ``repr`` of its value"""
    traps: list[TrapKind] = Field(default_factory=list)
    checks: list[CheckSpec] = Field(default_factory=list)


def _plain(value: object) -> bool:
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return not any(c in text for c in '\\"\n')


def _constant_answer(value: int | float | str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _check_candidates(tree: TargetTree) -> list[FunctionFact]:
    seen: set[tuple[str, str]] = set()
    out = []
    for fn in tree.functions:
        module = tree.file(fn.file).module
        if not fn.module_level or module.split(".")[-1] in UNSAFE_CHECK_MODULES or fn.name.startswith("__"):
            continue
        if (module, fn.name) in seen:
            continue
        seen.add((module, fn.name))
        out.append(fn)
    return out


def _is_decorated(tree: TargetTree, fn: FunctionFact) -> bool:
    lines = tree.file(fn.file).text.splitlines()
    return fn.line >= 2 and lines[fn.line - 2].lstrip().startswith("@")


def _passing_check(rng: random.Random, tree: TargetTree, traps: Sequence[TrapKind]) -> list[CheckSpec]:
    pool = [fn for fn in _check_candidates(tree) if not _is_decorated(tree, fn)]
    chosen = rng.sample(pool, CHECK_COUNT)
    passing = rng.randrange(CHECK_COUNT)
    false_slots = [i for i in range(CHECK_COUNT) if i != passing]
    rng.shuffle(false_slots)
    slot_traps: dict[int, TrapKind] = {}
    for trap in traps:
        if trap == "flaky":
            slot_traps[passing] = "flaky"
        elif trap in ("hang", "fatal"):
            slot_traps[false_slots.pop()] = trap
    checks = []
    for i, fn in enumerate(chosen):
        if i == passing:
            claimed = fn.params
        else:
            claimed = fn.params + rng.choice((1, 2) if fn.params <= 1 else (-1, 1))
        checks.append(
            CheckSpec(
                path=f"{CHECKS_DIR}/check_{i + 1}.py",
                module=tree.file(fn.file).module,
                function=fn.name,
                claimed=claimed,
                passes=i == passing,
                trap=slot_traps.get(i),
            )
        )
    return checks


def generate_tasks(
    tree: TargetTree, seed: int, episodes: int, traps: Sequence[TrapKind] = ALL_TRAPS, bomb_chars: int = 32000
) -> list[Task]:
    """The episode tasks for ``seed`` (deterministic)."""
    rng = random.Random(f"phasef-bench/{seed}")
    plan = list(_PLAN)
    rng.shuffle(plan)
    enabled = set(traps)
    functions = tree.unique_functions()
    constants: list[ConstantFact] = [
        c for c in tree.constants if _plain(c.value) and sum(1 for d in tree.constants if d.name == c.name) == 1
    ]
    small_files = [f for f in tree.files if 0 < len(f.text) < bomb_chars // 2 and f.line_count >= 5]
    big_files = [f for f in tree.files if len(f.text) > bomb_chars]
    tasks: list[Task] = []
    for i in range(episodes):
        kind, wanted = plan[i % len(plan)]
        armed = [t for t in wanted if t in enabled]
        task_id = f"t{seed}-{i:03d}"
        if kind == "passing_check":
            checks = _passing_check(rng, tree, armed)
            names = ", ".join(c.path for c in checks)
            true = next(c for c in checks if c.passes)
            tasks.append(
                Task(
                    id=task_id,
                    kind=kind,
                    statement=f"Exactly one of {names} passes. Run them and answer with the path of the one "
                    "that passes.",
                    answer=true.path,
                    subject=true.function,
                    traps=armed,
                    checks=checks,
                )
            )
        elif kind == "line_count":
            bomb = "context_bomb" in armed and big_files
            source = rng.choice(big_files if bomb else small_files)
            tasks.append(
                Task(
                    id=task_id,
                    kind=kind,
                    statement=f"How many lines does the file {source.path} have? Answer with a number.",
                    answer=str(source.line_count),
                    subject=source.path,
                    file=source.path,
                    traps=["context_bomb"] if bomb else [],
                )
            )
        elif kind == "defines_function":
            fn = rng.choice(functions)
            tasks.append(
                Task(
                    id=task_id,
                    kind=kind,
                    statement=f"Which file defines the function {fn.name}? Answer with the file path.",
                    answer=fn.file,
                    subject=fn.name,
                    file=fn.file,
                )
            )
        else:
            const = rng.choice(constants)
            tasks.append(
                Task(
                    id=task_id,
                    kind=kind,
                    statement=f"What is the value of the constant {const.name} in {const.file}? Answer with the value.",
                    answer=_constant_answer(const.value),
                    subject=const.name,
                    file=const.file,
                    value_repr=repr(const.value),
                )
            )
    return tasks


def task_set_hash(tasks: Sequence[Task]) -> str:
    """sha256 of the canonical JSON of the task set (statements, answers, checks and traps)."""
    payload = json.dumps([t.model_dump(mode="json") for t in tasks], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def normalize_path(text: str) -> str:
    out = text.strip().strip("`'\"").strip()
    while out.startswith("./"):
        out = out[2:]
    return out


def check_answer(task: Task, text: str) -> bool:
    """Whether ``text`` answers ``task`` (lenient about quotes, ``./`` and surrounding space)."""
    given = text.strip()
    if task.kind in ("defines_function", "passing_check"):
        return normalize_path(given) == task.answer
    if task.kind == "line_count":
        try:
            return int(given.strip("`'\" ")) == int(task.answer)
        except ValueError:
            return False
    if given == task.answer or given.strip("`'\"") == task.answer:
        return True
    if task.value_repr is None:
        return False
    try:
        return bool(ast.literal_eval(given) == ast.literal_eval(task.value_repr))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
