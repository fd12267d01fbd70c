"""The board's titles, retry totals and sharded steps (``PlanInfo``), read from the session's config without the
config's models: the same as the models give on any plan they accept, lenient on the rest, and no model imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasef_tui.session_views import PlanInfo
from pipeline.config import ConfigError, StageConfig, dump_config, load_config, read_section

REPO = Path(__file__).resolve().parent.parent
IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,8}", fullmatch=True)
TITLES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


def through_the_models(path: Path) -> dict[str, Any]:
    """What the board showed when it read the plan through ``pipeline.config`` (the reference)."""
    try:
        stages: dict[str, StageConfig] = read_section(path, "stages").value or {}
    except ConfigError:
        stages = {}
    plan: dict[str, Any] = {"order": list(stages), "stages": {}, "steps": {}, "retries": {}, "sharded": set()}
    for stage_id, stage in stages.items():
        plan["stages"][stage_id] = stage.title
        for step_id, step in stage.steps.items():
            key = f"{stage_id}.{step_id}"
            if step.title:
                plan["steps"][key] = step.title
            if "retries" in step.model_fields_set:
                plan["retries"][key] = step.retries
            if step.shards > 1:
                plan["sharded"].add(key)
    return plan


def as_read(path: Path) -> dict[str, Any]:
    info = PlanInfo(path)
    return {
        "order": info.stage_order,
        "stages": info.stage_titles,
        "steps": info.step_titles,
        "retries": info.retries,
        "sharded": info.sharded,
    }


def test_the_resolved_config_of_the_default_cycle_reads_as_through_the_models(tmp_path: Path) -> None:
    resolved = tmp_path / "config.resolved.toml"  # as the supervisor writes it (every field, defaults included)
    resolved.write_text(tomli_w.dumps(dump_config(load_config(REPO / "config.toml"))), encoding="utf-8")
    plan = as_read(resolved)
    assert plan == through_the_models(resolved)
    assert len(plan["order"]) >= 5 and len(plan["retries"]) >= 10  # (the default cycle: stages A to E)


def test_titles_and_retries_as_written(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[tui]\ntheme = 3\n\n[stages.a]\ntitle = "Stage A"\n\n[stages.a.steps.s]\nkind = "shell"\ncommand = "true"\n'
        'title = "Step S"\nretries = 2\n\n[stages.a.steps.t]\nkind = "shell"\ncommand = "true"\nshards = 4\n',
        encoding="utf-8",
    )
    plan = PlanInfo(config)
    assert plan.stage_order == ["a"] and plan.stage_titles == {"a": "Stage A"}
    assert plan.step_titles == {"a.s": "Step S"} and plan.retries == {"a.s": 2} and plan.sharded == {"a.t"}
    assert as_read(config) == through_the_models(config)


STEPS = st.fixed_dictionaries(
    {"kind": st.just("shell"), "command": st.just("true")},
    optional={
        "title": TITLES,
        "retries": st.integers(0, 100),
        "shards": st.integers(1, 256),
        "timeout": st.floats(0.5, 100),
    },
)
STAGES = st.fixed_dictionaries({"title": TITLES}, optional={"steps": st.dictionaries(IDS, STEPS, max_size=4)})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stages=st.dictionaries(IDS, STAGES, max_size=5))
def test_any_plan_the_models_accept_reads_as_through_them(tmp_path: Path, stages: dict[str, Any]) -> None:
    config = tmp_path / "config.resolved.toml"
    config.write_text(tomli_w.dumps({"stages": stages}), encoding="utf-8")
    assert as_read(config) == through_the_models(config)


ODD = st.one_of(st.booleans(), st.text(max_size=3), st.integers(-5, 400), st.floats(allow_nan=False), st.none())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stages=st.dictionaries(
        IDS,
        st.one_of(
            ODD,
            st.dictionaries(
                st.sampled_from(["title", "steps", "other"]),
                st.one_of(
                    ODD,
                    st.dictionaries(
                        IDS,
                        st.one_of(
                            ODD,
                            st.dictionaries(st.sampled_from(["title", "retries", "shards", "kind"]), ODD, max_size=4),
                        ),
                        max_size=3,
                    ),
                ),
                max_size=3,
            ),
        ),
        max_size=4,
    )
)
def test_values_of_the_wrong_type_are_left_out_and_the_rest_kept(tmp_path: Path, stages: dict[str, Any]) -> None:
    config = tmp_path / "config.resolved.toml"
    clean = {k: v for k, v in stages.items() if v is not None}
    config.write_text(tomli_w.dumps({"stages": _no_none(clean)}), encoding="utf-8")
    plan = PlanInfo(config)
    assert plan.stage_order == [k for k, v in clean.items() if isinstance(v, dict)]
    assert all(isinstance(t, str) for t in (*plan.stage_titles.values(), *plan.step_titles.values()))
    assert all(type(n) is int and 0 <= n <= 100 for n in plan.retries.values())
    for key in plan.sharded:
        stage, step = key.split(".", 1)
        shards = clean[stage]["steps"][step]["shards"]
        assert type(shards) is int and 2 <= shards <= 256


def _no_none(value: Any) -> Any:
    """TOML has no null: drop None values (as the supervisor's dump does)."""
    if isinstance(value, dict):
        return {k: _no_none(v) for k, v in value.items() if v is not None}
    return value


def test_a_file_that_cannot_be_read_as_toml_gives_an_empty_plan(tmp_path: Path) -> None:
    cases = {
        "missing.toml": None,
        "not-toml.toml": b"[stages.a\ntitle = 'x'\n",
        "not-utf8.toml": b'[stages.a]\ntitle = "\xff"\n',
        "no-stages.toml": b'[tui]\ntheme = "textual-dark"\n',
        "stages-not-a-table.toml": b'stages = "A, B"\n',
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        plan = PlanInfo(tmp_path / name)
        assert (plan.stage_order, plan.stage_titles, plan.step_titles, plan.retries) == ([], {}, {}, {}), name
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    assert PlanInfo(fifo).stage_order == []  # (no hang: not a regular file)
    assert PlanInfo(None).stage_order == []


def test_attaching_imports_neither_the_engine_nor_the_config_models(tmp_path: Path) -> None:
    """``phasef attach``'s path (the session found, its socket's path, the plan read, the TUI's modules) needs no
    engine, no jobs and no config models: an SSH session forked from the session server then runs none of their
    code, and the session server does not hold them."""
    session = tmp_path / "sessions" / "x"
    session.mkdir(parents=True)
    (session / "journal.jsonl").write_text("", encoding="utf-8")
    (session / "config.resolved.toml").write_text('[stages.a]\ntitle = "A"\n', encoding="utf-8")
    (tmp_path / "config.toml").write_text('[project]\nsessions_dir = "sessions"\n[stages.a]\n', encoding="utf-8")
    code = """
import argparse, sys
from pathlib import Path
import phasef_tui.app, phasef_tui.replay_source, phasef_tui.ssh.attach, phasef_tui.ssh.zygote
from phasef_tui.commands._common import resolve_session
from phasef_tui.session_source import session_config_path
from phasef_tui.session_views import PlanInfo
from pipeline.session_paths import socket_path
args = argparse.Namespace(sessions=None, config=None)
found = resolve_session(args, "sessions/x")
assert resolve_session(args, "x") == found == resolve_session(args, None)  # by name, the newest: the config read
assert PlanInfo(session_config_path(found)).stage_titles == {"a": "A"}
socket_path(found)
print(sorted(m for m in ("pipeline.engine", "pipeline.config", "pipeline.config_model", "pipeline.control",
                         "pipeline.session", "psutil") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out


def test_find_session_works_the_sessions_root_out_only_when_it_needs_it(tmp_path: Path) -> None:
    from pipeline.session_paths import find_session

    by_path, under_root = tmp_path / "elsewhere" / "s1", tmp_path / "root" / "s2"
    for folder in (by_path, under_root):
        folder.mkdir(parents=True)
        (folder / "journal.jsonl").write_text("", encoding="utf-8")
    asked: list[int] = []

    def root() -> Path:
        asked.append(1)
        return tmp_path / "root"

    assert find_session(root, str(by_path)) == by_path and asked == []
    assert find_session(root, "s2") == under_root and asked == [1]
    assert find_session(root, None) == under_root and asked == [1, 1]
    assert find_session(tmp_path / "root", "s2") == under_root  # (a root given as it is)
    with pytest.raises(FileNotFoundError, match=r"no session 'nope' under .*root \(recent: s2\)"):
        find_session(root, "nope")


PROJECT_VALUES = st.one_of(
    st.booleans(), st.text(max_size=8), st.integers(-5, 400), st.lists(st.text(max_size=3), max_size=2)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    project=st.one_of(
        st.dictionaries(
            st.sampled_from(["name", "sessions_dir", "final_gate", "step_functions", "final_override", "typo"]),
            PROJECT_VALUES,
            max_size=5,
        ),
        PROJECT_VALUES,
    ),
    other=st.booleans(),
)
def test_the_sessions_folder_is_read_as_the_models_read_it(tmp_path: Path, project: Any, other: bool) -> None:
    """``read_sessions_dir`` (finding a session by name, without the models): the models' answer on any
    ``[project]``, valid or not, whatever else the file holds."""
    from pipeline.config_section import read_sessions_dir

    config = tmp_path / "config.toml"
    data: dict[str, Any] = {"project": project}
    if other:
        data["stages"] = {"a": {"title": 3}}  # (another section with a problem)
    config.write_text(tomli_w.dumps(data), encoding="utf-8")
    assert read_sessions_dir(config) == read_section(config, "project").value.sessions_dir
