"""The suite does not depend on the machine it runs on: the user's tmux server, home, caches and variables.

A tmux server already running on the default socket, started with the user's own ``PHASEF_OPERATOR`` and keys,
once signed a test's decision with the user's name; these tests keep that class of leak out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from phasef_tui.ssh.host_key import default_host_key_path
from pipeline.models.gguf import cache_dir
from tests.conftest import TEST_CACHE
from tests.tmux_helpers import Tmux, base_environment, wait_until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

DECOY_ENV = {
    "PHASEF_OPERATOR": "mallory",
    "PHASEF_ROLE": "viewer",
    "PHASEF_CONFIG": "/nonexistent/config.toml",
    "NO_COLOR": "1",
    "OPENAI_API_KEY": "sk-decoy-key",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
}
# "tmux" as an argv element, or a command line starting with tmux and one of its options or commands
RUNS_TMUX = re.compile(r"""["']tmux["']\s*,|["']tmux\s+(-|new|send|kill|list|capture|display|has|resize|attach)\b""")
DUMP_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


@pytest.fixture
def decoy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A tmux server on the default socket of this test's ``TMUX_TMPDIR``, started with the user's variables."""
    folder = tmp_path / "decoy"
    folder.mkdir()
    env = {**base_environment(), **DECOY_ENV, "TMUX_TMPDIR": str(folder)}
    env.pop("TMUX", None)
    subprocess.run(["tmux", "-f", "/dev/null", "new-session", "-d", "-s", "decoy", "sleep 600"], env=env, check=True)
    socket = Path(
        subprocess.run(
            ["tmux", "display-message", "-p", "#{socket_path}"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    assert socket.is_socket() and socket.is_relative_to(folder)
    monkeypatch.setenv("TMUX_TMPDIR", str(folder))
    monkeypatch.setenv("TMUX", f"{socket},1,0")  # as inside one of the user's panes
    for name, value in DECOY_ENV.items():
        monkeypatch.setenv(name, value)
    try:
        yield socket
    finally:
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], env=env, capture_output=True)


def _decoy_sessions(socket: Path) -> list[str]:
    out = subprocess.run(
        ["tmux", "-S", str(socket), "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True
    )
    return out.stdout.split()


def test_a_pane_gets_exactly_the_environment_the_test_gives_beside_a_running_server(
    tmp_path: Path, decoy: Path
) -> None:
    dump = tmp_path / "env.json"
    with Tmux() as tmux:
        assert not tmux.socket.is_relative_to(decoy.parent)
        tmux.start("env", [sys.executable, "-c", DUMP_ENV, str(dump)], env={"PHASEF_OPERATOR": "tess"})
        assert tmux.wait_exit("env") == 0
        seen = json.loads(dump.read_text())
        assert _decoy_sessions(decoy) == ["decoy"]  # nothing was started on the user's server
    given = {**base_environment(), "PHASEF_OPERATOR": "tess"}
    assert {k: seen[k] for k in given} == given
    # all else the pane has is what a shell sets for itself; nothing from the decoy, tmux or the test process
    assert set(seen) - set(given) <= {"PWD", "SHLVL", "_", "OLDPWD"}
    assert "TMUX" not in seen and "mallory" not in json.dumps(seen) and "sk-decoy" not in json.dumps(seen)


def test_the_tmux_fixture_is_a_private_server_and_is_killed_afterwards(tmux: Tmux) -> None:
    tmux.start("sleeper", ["sleep", "60"])
    pid = int(tmux._tmux("display-message", "-p", "-t", "t:sleeper", "#{pid}").stdout)
    assert tmux.socket.is_socket() and tmux.running("sleeper")
    config = tmux._tmux("show-options", "-g", "default-shell").stdout
    assert "/bin/sh" in config  # the config written here, not the user's ~/.tmux.conf
    tmux.close()
    wait_until(lambda: not _alive(pid), 10, "the private server to end")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_user_home_caches_and_variables_are_out_of_reach() -> None:
    home = Path(os.environ["HOME"])
    assert home != Path("/root") and os.environ["XDG_CONFIG_HOME"].startswith(str(home))
    assert default_host_key_path().is_relative_to(home)
    assert cache_dir() == TEST_CACHE
    set_by_the_suite = {"PHASEF_CACHE_DIR": os.environ.get("PHASEF_CACHE_DIR"), "PHASEF_SUMMARY_WORKERS": "process"}
    assert not [n for n in os.environ if n.startswith(("PHASEF_", "OPENAI_")) and n not in set_by_the_suite]
    assert os.environ["PHASEF_SUMMARY_WORKERS"] == "process"
    assert "TMUX" not in os.environ and "NO_COLOR" not in os.environ
    assert os.environ["TMUX_TMPDIR"].startswith(str(home))


def test_every_cache_follows_xdg_when_no_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The models' (GGUF), the imported traces' and the start-ups' caches: ``$PHASEF_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/phasef``, else ``~/.cache/phasef``."""
    from phasef_tui.startup_cache import cache_folder
    from pipeline.traces.importers.cache import cache_dir as imports_dir

    def caches() -> list[Path]:
        return [cache_dir(), imports_dir().parent, cache_folder().parent]

    assert caches() == [TEST_CACHE] * 3
    monkeypatch.delenv("PHASEF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert caches() == [tmp_path / "xdg" / "phasef"] * 3
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")  # (not absolute: ignored, as the XDG spec says)
    assert caches() == [Path(os.environ["HOME"]) / ".cache" / "phasef"] * 3
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert caches() == [Path(os.environ["HOME"]) / ".cache" / "phasef"] * 3


def test_no_test_runs_tmux_but_through_the_shared_helper() -> None:
    """One way to drive tmux (tests/tmux_helpers.py); this file starts its decoys on purpose."""
    here = Path(__file__).resolve()
    allowed = {here.parent / "tmux_helpers.py", here}
    offenders = []
    for path in sorted(here.parent.rglob("*.py")):
        if path in allowed:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(
                r"""["']tmux["']\s*,|["']tmux\s+(-|new|send|kill|list|capture|display|has|resize|attach)\b""", line
            ):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "tmux run outside tests/tmux_helpers.py:\n" + "\n".join(offenders)
