"""The one way tests drive tmux: a private server per test, and an environment given explicitly to every pane.

A tmux server that already runs (the user's own, on the default socket) gives a new pane the environment it was
started with, not the environment of the command that asked for the pane; a test that used it would see the
user's ``PHASEF_OPERATOR``, ``NO_COLOR`` or API keys instead of its own. So every ``Tmux`` here has its own socket
(``-S``) in a temporary folder, reads no user configuration (``-f`` names a config written here), and runs each
pane program under ``env -i`` with exactly the variables the test chose: what the pane sees does not depend on the
machine's sessions or on which server happened to start first.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# what a pane inherits from the test process, when set; everything else is given by the test or absent
PASSED_VARS = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
PANE_TERM = "xterm-256color"
CONFIG = (
    # options in a config file hold before the first pane starts (a fast-failing program must leave its status)
    "set -g remain-on-exit on\n"
    "set -g status off\n"
    f"set -g default-terminal {PANE_TERM}\n"
    "set -g escape-time 0\n"
    "set -g default-shell /bin/sh\n"
    "set -g update-environment ''\n"
)


def wait_until(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def base_environment(**extra: str) -> dict[str, str]:
    """The pane environment a test starts from: the few harmless variables above, ``TERM``, and ``extra``."""
    env = {name: os.environ[name] for name in PASSED_VARS if name in os.environ}
    env["TERM"] = PANE_TERM
    env.update(extra)
    return env


class Tmux:
    """A private tmux server (own socket, no user config); each window runs one program with a given environment."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        if shutil.which("tmux") is None:
            raise RuntimeError("tmux is not installed")
        self.folder = Path(tempfile.mkdtemp(prefix="phasef-tmux-"))
        self.socket = self.folder / "sock"
        self.config = self.folder / "tmux.conf"
        self.config.write_text(CONFIG)
        self.env = dict(env) if env is not None else base_environment()
        # the tmux client itself: no TMUX (no nesting, no other server), its own TMUX_TMPDIR, a UTF-8 locale
        self._client_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.folder),
            "LANG": "C.UTF-8",
            "TERM": PANE_TERM,
            "TMUX_TMPDIR": str(self.folder),
        }
        self.windows: list[str] = []

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-u", "-S", str(self.socket), "-f", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=15,
            env=self._client_env,
        )

    def start(
        self,
        name: str,
        argv: Sequence[str],
        width: int = 100,
        height: int = 30,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> str:
        """Run ``argv`` in a new window ``name`` with ``self.env`` plus ``env`` and nothing else."""
        assert name not in self.windows, f"window {name} exists already"
        # the exit status goes to a file: tmux 3.3 sometimes leaves a fast-exiting pane process unreaped
        status = self.folder / f"{name}.status"
        variables = [f"{k}={v}" for k, v in {**self.env, **(env or {})}.items()]
        wrapped = ["env", "-i", *variables, "sh", "-c", f'"$@"; echo $? > {shlex.quote(str(status))}', "sh", *argv]
        command = shlex.join(wrapped)
        where = ["-c", str(cwd)] if cwd is not None else []
        if not self.windows:
            size = ["-x", str(width), "-y", str(height)]
            r = self._tmux("new-session", "-d", "-s", "t", "-n", name, *size, *where, command)
            assert r.returncode == 0, r.stderr
        else:
            r = self._tmux("new-window", "-d", "-t", "t:", "-n", name, *where, command)
            assert r.returncode == 0, r.stderr
            self.resize(name, width, height)
        self.windows.append(name)
        return name

    def screen(self, name: str) -> str:
        return self._tmux("capture-pane", "-p", "-t", f"t:{name}").stdout

    def wait_for(self, name: str, text: str, timeout: float = 30) -> str:
        return self.wait_for_any(name, [text], timeout)

    def wait_for_any(self, name: str, texts: list[str], timeout: float = 30) -> str:
        found: list[str] = [""]

        def seen() -> bool:
            found[0] = self.screen(name)
            return any(t in found[0] for t in texts)

        try:
            wait_until(seen, timeout, f"one of {texts!r} on {name}")
        except AssertionError:
            what = repr(texts[0]) if len(texts) == 1 else f"one of {texts!r}"
            raise AssertionError(f"timed out waiting for {what} on {name}; screen:\n{found[0]}") from None
        return found[0]

    def send(self, name: str, *keys: str, literal: bool = False, pause: float = 0.0) -> None:
        """Send keys (tmux key names, or text with ``literal``); with ``pause``, one at a time that far apart."""
        groups = [keys] if pause <= 0 else [(k,) for k in keys]
        for group in groups:
            args = ["send-keys", "-t", f"t:{name}"] + (["-l"] if literal else []) + list(group)
            r = self._tmux(*args)
            assert r.returncode == 0, r.stderr
            if pause > 0:
                time.sleep(pause)

    def resize(self, name: str, width: int, height: int) -> None:
        r = self._tmux("resize-window", "-t", f"t:{name}", "-x", str(width), "-y", str(height))
        assert r.returncode == 0, r.stderr

    def exit_status(self, name: str) -> int | None:
        """The pane program's exit status once it has ended, else None."""
        try:
            text = (self.folder / f"{name}.status").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text else None

    def running(self, name: str) -> bool:
        return self.exit_status(name) is None

    def wait_exit(self, name: str, timeout: float = 20) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            code = self.exit_status(name)
            if code is not None:
                return code
            time.sleep(0.05)
        raise AssertionError(f"the program in {name} did not exit; screen:\n{self.screen(name)}")

    def close(self) -> None:
        self._tmux("kill-server")
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Tmux:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
