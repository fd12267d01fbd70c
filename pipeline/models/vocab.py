"""The workload's own text, for training the tiny model's tokenizer.

A byte-level BPE trained on what the model will read and write (the prompt's fixed text, the action JSON, the
target's paths, identifiers and source lines, the observations the sandbox returns) gets short token sequences for
exactly those strings with a small vocabulary, which keeps the tiny model fast to train and to serve. Any other
text still encodes (byte level), only in more tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pipeline.bench.prompt import ACT_NAMES, REPAIR_INSTRUCTION, SYSTEM_PROMPT, Action, render_action
from pipeline.bench.target import DEFAULT_PACKAGES, TargetTree, load_target
from pipeline.bench.tasks import ALL_TRAPS, Task, generate_tasks

CORPUS_SEEDS = 24
CORPUS_EPISODES = 10
SOURCE_FILE_MAX_CHARS = 40_000
"""larger files (generated data tables) would fill the vocabulary with their hex literals"""

_OBSERVATION_TEMPLATES = (
    "STATE: tick {n} | failures {m} | streak {k} | checks {c}",
    "TASK: ",
    "EARLIER:",
    "LAST: none",
    "LAST: ",
    "ACTION?",
    "(invalid output) -> SchemaViolation",
    "(no reply) -> ConnectionError",
    "(watchdog) -> ok",
    "invalid action: not JSON: Expecting value at char 0",
    "invalid action: field 'act': Input should be 'list', 'read', 'search', 'check' or 'answer'",
    "{n} matches",
    "no match for",
    "no such file:",
    "no such directory:",
    "correct:",
    "wrong answer:",
    "PASS checks/check_{c}.py",
    "FAIL checks/check_{c}.py: FAIL: takes {n} parameters, not {m}",
    "FAIL checks/check_{c}.py: transient error: connection reset by peer (flaky, try again)",
    "TIMEOUT checks/check_{c}.py: no result after 2.0s (killed)",
    "DEADLOCK checks/check_{c}.py: run.lock held by pid {n} for 0.3s (no progress)",
    "watchdog: run.lock held by pid {n}, which waits for index.lock held by the harness: deadlock broken",
    "[output of {n} chars is too large for the context and was cut]",
    "FATAL: checks/check_{c}.py deleted the sandbox sources",
    "-> ok",
    "-> success",
    "-> CheckFailed",
    "-> Timeout",
    "-> Deadlock",
    "-> NotFound",
    "-> WrongAnswer",
    "-> ContextOverflow",
)


def _expert_actions(task: Task) -> list[Action]:
    if task.kind == "defines_function":
        return [Action(act="search", arg=f"def {task.subject}("), Action(act="answer", arg=task.answer)]
    if task.kind == "line_count":
        return [Action(act="read", arg=task.subject), Action(act="answer", arg=task.answer)]
    if task.kind == "constant_value":
        return [Action(act="search", arg=f"{task.subject} ="), Action(act="answer", arg=task.answer)]
    return [Action(act="check", arg=c.path) for c in task.checks] + [Action(act="answer", arg=task.answer)]


def workload_corpus(tree: TargetTree | None = None, packages: Sequence[str] = DEFAULT_PACKAGES) -> Iterator[str]:
    """Deterministic lines of workload text (the same tree gives the same corpus)."""
    tree = tree or load_target(packages)
    for _ in range(20):
        yield SYSTEM_PROMPT
        yield REPAIR_INSTRUCTION
        for act in ACT_NAMES:
            yield render_action(Action.model_validate({"act": act, "arg": "checks"}))
    for n in range(64):
        for template in _OBSERVATION_TEMPLATES:
            yield template.format(n=n, m=n % 7, k=n % 5, c=n % 4 + 1)
    for source in tree.files:
        yield f"{source.path} ({source.line_count} lines)"
        if len(source.text) <= SOURCE_FILE_MAX_CHARS:
            for number, line in enumerate(source.text.splitlines(), start=1):
                if line.strip():
                    yield f"{number}: {line}"
                    yield f"{source.path}:{number}: {line.strip()}"
    for fn in tree.functions:
        yield f"def {fn.name}("
    for seed in range(CORPUS_SEEDS):
        for task in generate_tasks(tree, seed, CORPUS_EPISODES, ALL_TRAPS):
            yield "TASK: " + task.statement
            for action in _expert_actions(task):
                yield render_action(action)
                yield f"LAST: {render_action(action)} -> ok"
