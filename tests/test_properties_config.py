"""Property tests of config files: random keys and types anywhere in the plan give a config or a ``ConfigError``
whose every issue names the file (and a line when the key is on one), never another exception."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import ConfigError, PhasefConfig, load_config, parse_config

KEYS = [
    "project",
    "stages",
    "steps",
    "kind",
    "title",
    "needs",
    "command",
    "function",
    "params",
    "outputs",
    "inputs",
    "timeout",
    "retries",
    "backoff",
    "pool",
    "pools",
    "services",
    "env",
    "allow",
    "gate",
    "shell",
    "builtin",
    "api",
    "audit",
    "evidence",
    "prompt",
    "sequential",
    "final_gate",
    "step_functions",
    "cache",
    "jitter",
    "A",
    "B",
    "work",
    "auditors",
    "models",
    "tui",
    "keys",
    "sessions_dir",
    "name",
    "start_timeout",
]
scalars = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "shell",
            "gate",
            "builtin",
            "api",
            "mlx_train",
            "audit",
            "A",
            "A.work",
            "true",
            "default",
            "pipeline.data.guard_split:run",
            "mlx_serve",
        ]
    ),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner),
    max_leaves=25,
)


@st.composite
def plans(draw: st.DrawFn) -> dict[str, Any]:
    """A plan that is close to valid, with random keys and types put anywhere in it."""
    step: dict[str, Any] = {"kind": draw(st.sampled_from(["shell", "gate", "builtin", "api", "audit", "x"]))}
    if step["kind"] == "shell":
        step["command"] = "true"
    plan: dict[str, Any] = {"stages": {"A": {"title": "A", "steps": {"work": step}}}}
    for _ in range(draw(st.integers(0, 4))):
        target = plan
        for key in draw(st.lists(st.sampled_from(["stages", "A", "steps", "work", "params", "project"]), max_size=4)):
            nxt = target.setdefault(key, {})
            if not isinstance(nxt, dict):
                break
            target = nxt
        target[draw(st.sampled_from(KEYS))] = draw(values)
    return plan


def _check(text: str) -> None:
    try:
        cfg = parse_config(text, "plan.toml")
    except ConfigError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.file == "plan.toml" and issue.reason
            assert issue.line is None or 1 <= issue.line <= len(text.splitlines()) + 1
    else:
        assert isinstance(cfg, PhasefConfig)
        cfg.dependencies()


@given(plans())
def test_random_keys_and_types_give_a_config_or_config_errors(plan: dict[str, Any]) -> None:
    _check(tomli_w.dumps(plan))


@given(st.text(max_size=300))
def test_any_text_gives_a_config_or_config_errors(text: str) -> None:
    _check(text)


@given(st.binary(max_size=300))
def test_any_file_content_gives_a_config_or_config_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="cfg-prop-") as folder:
        path = Path(folder) / "config.toml"
        path.write_bytes(data)
        try:
            load_config(path)
        except ConfigError as exc:
            assert all(issue.file == str(path) for issue in exc.issues)
