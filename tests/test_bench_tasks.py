"""Tasks come from the real target's facts, are fixed by the seed and cover every trap."""

from __future__ import annotations

import ast

import pytest

from pipeline.bench.target import TargetError, TargetTree, load_target
from pipeline.bench.tasks import ALL_TRAPS, Task, check_answer, generate_tasks, task_set_hash


@pytest.fixture(scope="module")
def tree() -> TargetTree:
    return load_target()


def test_target_is_the_installed_sources(tree: TargetTree) -> None:
    assert set(tree.packages) == {"h11", "idna", "mdurl"}
    paths = {f.path for f in tree.files}
    assert "h11/_util.py" in paths and "idna/core.py" in paths
    assert all(v != "unknown" for v in tree.versions.values())
    assert tree.unique_functions() and tree.constants


def test_unknown_package_is_a_clear_error() -> None:
    with pytest.raises(TargetError, match="no_such_package_xyz"):
        load_target(["no_such_package_xyz"])


def test_same_seed_same_tasks_and_hash(tree: TargetTree) -> None:
    a, b = generate_tasks(tree, 3, 12), generate_tasks(tree, 3, 12)
    assert a == b
    assert task_set_hash(a) == task_set_hash(b)
    assert task_set_hash(a) != task_set_hash(generate_tasks(tree, 4, 12))
    assert task_set_hash(a) != task_set_hash(generate_tasks(tree, 3, 11))


def test_ten_episodes_arm_every_trap(tree: TargetTree) -> None:
    for seed in range(5):
        armed = {t for task in generate_tasks(tree, seed, 10) for t in task.traps}
        assert armed == set(ALL_TRAPS)


def test_disabled_traps_are_not_armed(tree: TargetTree) -> None:
    tasks = generate_tasks(tree, 0, 20, traps=("hang", "flaky"))
    armed = {t for task in tasks for t in task.traps}
    assert armed <= {"hang", "flaky"}
    assert all(c.trap in (None, "hang", "flaky") for task in tasks for c in task.checks)


def _assert_true_fact(tree: TargetTree, task: Task) -> None:
    if task.kind == "defines_function":
        defining = [f.path for f in tree.files if f"def {task.subject}(" in f.text]
        assert defining == [task.answer]
    elif task.kind == "line_count":
        assert int(task.answer) == len(tree.file(task.subject).text.splitlines())
    elif task.kind == "constant_value":
        assert task.file is not None and task.value_repr is not None
        module = ast.parse(tree.file(task.file).text)
        values = [
            n.value.value
            for n in module.body
            if isinstance(n, ast.Assign)
            and any(getattr(t, "id", None) == task.subject for t in n.targets)
            and isinstance(n.value, ast.Constant)
        ]
        assert values and repr(values[0]) == task.value_repr
    else:
        passing = [c for c in task.checks if c.passes]
        assert len(passing) == 1 and passing[0].path == task.answer
        assert len(task.checks) == 4 and len({c.path for c in task.checks}) == 4
        assert all(c.trap != "flaky" or c.passes for c in task.checks)
        assert all(c.trap not in ("hang", "fatal") or not c.passes for c in task.checks)


def test_answers_are_true_facts_of_the_sources(tree: TargetTree) -> None:
    kinds = set()
    for seed in range(6):
        for task in generate_tasks(tree, seed, 10):
            kinds.add(task.kind)
            _assert_true_fact(tree, task)
            assert check_answer(task, task.answer)
    assert kinds == {"defines_function", "line_count", "constant_value", "passing_check"}


def test_context_bomb_counts_lines_of_a_huge_file(tree: TargetTree) -> None:
    bombs = [t for t in generate_tasks(tree, 0, 10) if "context_bomb" in t.traps]
    assert bombs and all(len(tree.file(t.subject).text) > 32000 for t in bombs)


def test_answer_checking_is_lenient_only_about_form() -> None:
    path_task = Task(id="a", kind="defines_function", statement="s", answer="h11/_util.py", subject="f")
    assert check_answer(path_task, " ./h11/_util.py ")
    assert check_answer(path_task, "`h11/_util.py`")
    assert not check_answer(path_task, "h11/_state.py")
    count_task = Task(id="b", kind="line_count", statement="s", answer="135", subject="h11/_util.py")
    assert check_answer(count_task, "135\n") and not check_answer(count_task, "136")
    assert not check_answer(count_task, "many")
    const = Task(id="c", kind="constant_value", statement="s", answer="xn--", subject="p", value_repr="b'xn--'")
    assert check_answer(const, "xn--") and check_answer(const, 'b"xn--"') and check_answer(const, '"xn--"')
    assert not check_answer(const, "xn-") and not check_answer(const, "__import__('os')")
