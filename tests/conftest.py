"""Every test runs away from the user's own setup: its own home, config, cache and tmux, none of their variables.

A test must give the same result on a clean CI machine and on a developer's machine where a tmux server runs,
``PHASEF_OPERATOR`` or ``NO_COLOR`` is exported, an API key is in the environment and ``~/.config/phasef`` or
``~/.cache/phasef`` hold real files. So before each test: ``HOME`` and the XDG folders point into a fresh temporary
folder, ``TMUX_TMPDIR`` too (a stray ``tmux`` call starts a server of its own there, never joins the user's), and
the variables phasef or the terminal libraries read are removed (``PHASEF_SUMMARY_WORKERS`` is then set: see the
fixture). Only pip's configuration is kept from the user's
home (where packages come from: the GGUF test downloads a wheel); downloads the suite reuses go to the project's
``.cache/`` folder, not the user's cache.

Tests that drive tmux take the ``tmux`` fixture (a private server, see tests/tmux_helpers.py); they are marked
``tmux`` so CI can run them once more beside a decoy server (.ci/decoy-tmux).

The Hypothesis profiles for the property tests (tests/test_properties_*.py): ``ci`` (the default) has a fixed,
small example budget, derandomized, and no per-example deadline, since a loaded 2-core machine makes single examples
slow at random; ``long`` has many more examples for local runs hunting the next bug:
``pytest tests/test_properties_*.py --hypothesis-profile=long``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.tmux_helpers import Tmux

ROOT = Path(__file__).resolve().parent.parent
TEST_CACHE = ROOT / ".cache" / "phasef-tests"

STRIPPED_NAMES = frozenset(
    {
        "TMUX",
        "TMUX_PANE",
        "NO_COLOR",
        "FORCE_COLOR",
        "COLORTERM",
        "TEXTUAL",
        "ESCDELAY",
        "SSH_AUTH_SOCK",
        "SSH_AGENT_PID",
        "GEMINI_API_KEY",
        "ANTHROPIC_API_KEY",
        "HF_TOKEN",
        "HF_HOME",
        "HF_HUB_CACHE",
    }
)
STRIPPED_PREFIXES = ("PHASEF_", "OPENAI_", "TEXTUAL_")
XDG_DIRS = {"XDG_CONFIG_HOME": ".config", "XDG_CACHE_HOME": ".cache", "XDG_DATA_HOME": ".local/share",
            "XDG_STATE_HOME": ".local/state", "XDG_RUNTIME_DIR": "run"}  # fmt: skip


def _user_pip_config() -> Path | None:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    for candidate in (base / "pip" / "pip.conf", Path.home() / ".pip" / "pip.conf"):
        if candidate.is_file():
            return candidate
    return None


PIP_CONFIG = _user_pip_config()  # read once, before any test moves HOME


KEPT_PREFIXES = ("TEXTUAL_SNAPSHOT_",)
"""Set by pytest-textual-snapshot for the whole run (where it gathers the pictures): not the user's, kept."""


def stripped(name: str) -> bool:
    return (name in STRIPPED_NAMES or name.startswith(STRIPPED_PREFIXES)) and not name.startswith(KEPT_PREFIXES)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    for name in [n for n in os.environ if stripped(n)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    for name, sub in XDG_DIRS.items():
        folder = home / sub
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        monkeypatch.setenv(name, str(folder))
    monkeypatch.setenv("TMUX_TMPDIR", str(home / "run"))
    monkeypatch.setenv("PHASEF_CACHE_DIR", str(TEST_CACHE))
    # A big trace's summary runs in worker processes, or in the viewer's process when the machine has no idle core
    # (pipeline/traces/summary_local.py): a choice made by the load of the moment. Tests pin it to the processes;
    # tests/test_traces_summary_local.py covers the other way and the choice itself.
    monkeypatch.setenv("PHASEF_SUMMARY_WORKERS", "process")
    if PIP_CONFIG is not None and "PIP_CONFIG_FILE" not in os.environ:
        monkeypatch.setenv("PIP_CONFIG_FILE", str(PIP_CONFIG))
    return home


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    """A private tmux server for this test, killed after it."""
    with Tmux() as t:
        yield t


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tmux" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.tmux)


_SLOW_MACHINE = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_MACHINE,
)
settings.register_profile(
    "long",
    max_examples=2_000,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_MACHINE,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
