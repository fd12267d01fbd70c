"""The sandbox's actions and traps are real: files, subprocess checks, locks held by another process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.bench.environment import EnvSettings, Sandbox, StepResult
from pipeline.bench.prompt import Action
from pipeline.bench.reflex import Observed, reflex_action
from pipeline.bench.target import TargetTree, load_target
from pipeline.bench.tasks import CheckSpec, Task, generate_tasks

SETTINGS = EnvSettings(check_timeout_s=1.0, lock_timeout_s=0.2)
MakeBox = Callable[[Task], Sandbox]


@pytest.fixture(scope="module")
def tree() -> TargetTree:
    return load_target()


def _check_task(tree: TargetTree, traps: list[str]) -> Task:
    """A passing_check task from the generator with exactly the wanted traps (searching seeds)."""
    for seed in range(200):
        for task in generate_tasks(tree, seed, 10):
            if task.kind == "passing_check" and sorted(task.traps) == sorted(traps):
                return task
    raise AssertionError(f"no task with traps {traps}")


@pytest.fixture
def sandbox_for(tmp_path: Path, tree: TargetTree) -> Iterator[MakeBox]:
    opened: list[Sandbox] = []

    def make(task: Task) -> Sandbox:
        box = Sandbox(tmp_path / f"box{len(opened)}", tree, task, SETTINGS)
        box.open()
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


def _do(box: Sandbox, act: str, arg: str) -> StepResult:
    return box.step(Action.model_validate({"act": act, "arg": arg}))


def test_list_read_search_and_not_found(sandbox_for: MakeBox, tree: TargetTree) -> None:
    task = next(t for t in generate_tasks(tree, 0, 10) if t.kind == "defines_function")
    box = sandbox_for(task)
    listing = _do(box, "list", "")
    assert listing.outcome == "ok" and "h11/" in listing.observation.splitlines()
    read = _do(box, "read", "h11/_util.py")
    assert read.observation.startswith(f"h11/_util.py ({tree.file('h11/_util.py').line_count} lines)\n1: ")
    found = _do(box, "search", f"def {task.subject}(")
    assert found.outcome == "ok" and f"{task.answer}:" in found.observation
    for act, arg, error in [
        ("read", "nope.py", "NotFound"),
        ("read", "../../etc/passwd", "NotFound"),
        ("read", "/etc/passwd", "NotFound"),
        ("list", ".phasef", "NotFound"),
        ("search", "zzz_no_such_text_zzz", "NotFound"),
        ("search", "x", "ToolError"),
        ("answer", "wrong/path.py", "WrongAnswer"),
    ]:
        result = _do(box, act, arg)
        assert (result.outcome, result.error_class) == ("error", error), (act, arg)
    assert _do(box, "answer", task.answer).solved


def test_huge_output_is_a_context_bomb(sandbox_for: MakeBox, tree: TargetTree) -> None:
    task = next(t for t in generate_tasks(tree, 0, 10) if "context_bomb" in t.traps)
    box = sandbox_for(task)
    result = _do(box, "read", task.subject)
    assert (result.outcome, result.error_class, result.trap) == ("error", "ContextOverflow", "context_bomb")
    assert len(result.observation) > SETTINGS.bomb_chars
    assert f"{task.subject} ({task.answer} lines)" in result.observation[:300]


def test_hanging_check_is_killed_at_the_timeout(sandbox_for: MakeBox, tree: TargetTree) -> None:
    task = _check_task(tree, ["hang"])
    box = sandbox_for(task)
    hang = next(c for c in task.checks if c.trap == "hang")
    started = time.monotonic()
    result = _do(box, "check", hang.path)
    assert (result.outcome, result.error_class, result.trap) == ("timeout", "Timeout", "hang")
    assert time.monotonic() - started < SETTINGS.check_timeout_s + 2


def test_checks_really_run_and_exactly_one_passes(sandbox_for: MakeBox, tree: TargetTree) -> None:
    task = _check_task(tree, ["hang"])
    box = sandbox_for(task)
    outcomes = {c.path: _do(box, "check", c.path) for c in task.checks if c.trap is None}
    passed = [p for p, r in outcomes.items() if r.outcome == "ok"]
    assert passed == [task.answer]
    assert all(
        r.error_class == "CheckFailed" and "parameters" in r.observation
        for p, r in outcomes.items()
        if p != task.answer
    )


def test_flaky_check_fails_twice_then_passes(sandbox_for: MakeBox, tree: TargetTree) -> None:
    task = _check_task(tree, ["flaky"])
    box = sandbox_for(task)
    flaky: CheckSpec = next(c for c in task.checks if c.trap == "flaky")
    runs = [_do(box, "check", flaky.path) for _ in range(3)]
    assert [r.outcome for r in runs] == ["error", "error", "ok"]
    assert all("transient" in r.observation for r in runs[:2])
    assert all(r.trap == "flaky" for r in runs)


def test_fatal_check_wipes_the_sandbox(sandbox_for: MakeBox, tree: TargetTree) -> None:
    task = _check_task(tree, ["fatal"])
    box = sandbox_for(task)
    fatal = next(c for c in task.checks if c.trap == "fatal")
    result = _do(box, "check", fatal.path)
    assert (result.outcome, result.error_class, result.trap) == ("death", "Fatal", "fatal")
    assert not (box.root / "h11").exists()
    assert result.death_reason and fatal.path in result.death_reason


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a killed child that nobody reaped yet is a zombie, not alive
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_deadlock_until_the_watchdog_breaks_it(sandbox_for: MakeBox, tree: TargetTree) -> None:
    task = _check_task(tree, ["deadlock", "hang"])
    box = sandbox_for(task)
    assert box.deadlocked()
    holder = box._holder
    assert holder is not None and _alive(holder.pid)
    safe = next(c for c in task.checks if c.trap is None)
    for _ in range(2):  # it does not go away by itself
        result = _do(box, "check", safe.path)
        assert (result.error_class, result.trap) == ("Deadlock", "deadlock")
    broken = box.break_deadlock()
    assert broken.outcome == "ok" and broken.trap == "deadlock" and str(holder.pid) in broken.observation
    assert not _alive(holder.pid) and not box.deadlocked()
    assert _do(box, "check", safe.path).error_class in (None, "CheckFailed")


def test_close_kills_the_lock_holder_and_removes_the_sandbox(tree: TargetTree, tmp_path: Path) -> None:
    task = _check_task(tree, ["deadlock", "flaky"])
    box = Sandbox(tmp_path / "box", tree, task, SETTINGS)
    box.open()
    assert box._holder is not None
    pid = box._holder.pid
    box.close()
    assert not _alive(pid)
    assert not (tmp_path / "box").exists()


@pytest.mark.parametrize("kind", ["defines_function", "line_count", "constant_value", "passing_check"])
def test_reflex_alone_solves_every_kind(kind: str, tree: TargetTree, tmp_path: Path) -> None:
    """The scripted expert, acting every tick, answers correctly (unless a fatal check comes first)."""
    for seed in range(3):
        task = next(t for t in generate_tasks(tree, seed, 10) if t.kind == kind and "fatal" not in t.traps)
        box = Sandbox(tmp_path / f"{kind}{seed}", tree, task, SETTINGS)
        box.open()
        seen: list[Observed] = []
        try:
            for _ in range(20):
                action = reflex_action(task, seen)
                if seen and seen[-1].error_class == "Deadlock":
                    box.break_deadlock()  # what the watchdog does between the reflex's turns
                result = box.step(action)
                seen.append(Observed(action, result.outcome, result.error_class, result.observation))
                if result.solved:
                    break
        finally:
            box.close()
        assert seen[-1].outcome == "success", [(o.action, o.error_class) for o in seen]
        assert seen[-1].action.arg.strip() == task.answer or kind == "constant_value"
