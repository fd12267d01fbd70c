"""The sandbox an episode acts in: real files, real searches, real check scripts, real traps.

Each episode gets a fresh copy of the target's sources plus the check scripts of its task. Actions are real
operations on that copy; checks run as Python subprocesses. The traps are real too:

- hang: a check that sleeps forever; the runner kills its process group after ``check_timeout_s``.
- deadlock: a stale build process holds ``run.lock`` (which every check needs) and waits for ``index.lock``, which
  the harness holds while the episode runs; a check waits for ``run.lock`` in vain. The watchdog breaks the cycle.
- flaky: the passing check fails with a transient error on its first runs, which invites re-running (thrashing).
- context bomb: a file or a search whose output is far larger than any prompt; the harness must cut it.
- fatal: a check that deletes the sandbox's sources; the episode cannot go on (death).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from pipeline.bench.prompt import Action
from pipeline.bench.target import TargetTree, materialize
from pipeline.bench.tasks import CheckSpec, Task, check_answer
from pipeline.fsio import atomic_write_text
from pipeline.traces.schema import Outcome, TrapKind

STATE_DIR = ".phasef"
RUN_LOCK = "run.lock"
INDEX_LOCK = "index.lock"
FLAKY_FAILURES = 2

_CHECK_TEMPLATE = '''"""Check that {module}.{function} takes {claimed} parameters."""
import inspect
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
{prelude}
from {module} import {function} as target

count = len(inspect.signature(target).parameters)
if count != {claimed}:
    sys.exit(f"FAIL: {function} takes {{count}} parameters, not {claimed}")
print("PASS")
'''

_PRELUDES: dict[str, str] = {
    "hang": "import time\n\ntime.sleep(3600)  # waits for a test server that never comes up\n",
    "fatal": (
        "import shutil\n\n"
        "# clean the build tree before checking\n"
        "for name in {packages!r}:\n"
        "    shutil.rmtree(ROOT / name, ignore_errors=True)\n"
    ),
    "flaky": (
        'counter = ROOT / "{state}" / "flaky_{index}.count"\n'
        "runs = int(counter.read_text()) if counter.exists() else 0\n"
        "counter.write_text(str(runs + 1))\n"
        "if runs < {failures}:\n"
        '    sys.exit("transient error: connection reset by peer (flaky, try again)")\n'
    ),
}

_HOLDER = (
    "import fcntl, sys, time\n"
    "a = open(sys.argv[1], 'w'); fcntl.flock(a, fcntl.LOCK_EX)\n"
    "print('holding', flush=True)\n"
    "b = open(sys.argv[2], 'w'); fcntl.flock(b, fcntl.LOCK_EX)\n"
    "time.sleep(3600)\n"
)


@dataclass(frozen=True)
class EnvSettings:
    check_timeout_s: float = 2.0
    lock_timeout_s: float = 0.3
    bomb_chars: int = 32000
    python: str = sys.executable


@dataclass
class StepResult:
    """What one action did."""

    outcome: Outcome
    observation: str
    error_class: str | None = None
    trap: TrapKind | None = None
    solved: bool = False
    death_reason: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome in ("error", "timeout", "death")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


class Sandbox:
    """One episode's working copy of the target and the traps armed in it."""

    def __init__(self, root: Path, tree: TargetTree, task: Task, settings: EnvSettings = EnvSettings()) -> None:
        self.root = root
        self.tree = tree
        self.task = task
        self.settings = settings
        self.checks_run = 0
        self._index_lock: IO[str] | None = None
        self._holder: subprocess.Popen[bytes] | None = None

    # -- life cycle ---------------------------------------------------------------------------------------------
    def open(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        materialize(self.tree, self.root)
        (self.root / STATE_DIR).mkdir(parents=True)
        for index, spec in enumerate(self.task.checks, start=1):
            self._write_check(spec, index)
        if "deadlock" in self.task.traps:
            self._arm_deadlock()

    def close(self, keep: bool = False) -> None:
        if self._holder is not None:
            _kill_group(self._holder)
            self._holder = None
        if self._index_lock is not None:
            self._index_lock.close()
            self._index_lock = None
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def _write_check(self, spec: CheckSpec, index: int) -> None:
        prelude = ""
        if spec.trap in _PRELUDES:
            prelude = _PRELUDES[spec.trap].format(
                packages=list(self.tree.packages), state=STATE_DIR, index=index, failures=FLAKY_FAILURES
            )
        text = _CHECK_TEMPLATE.format(module=spec.module, function=spec.function, claimed=spec.claimed, prelude=prelude)
        path = self.root / spec.path
        atomic_write_text(path, text, fsync=False)

    def _arm_deadlock(self) -> None:
        state = self.root / STATE_DIR
        self._index_lock = open(state / INDEX_LOCK, "w")
        fcntl.flock(self._index_lock, fcntl.LOCK_EX)
        self._holder = subprocess.Popen(
            [self.settings.python, "-c", _HOLDER, str(state / RUN_LOCK), str(state / INDEX_LOCK)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline()
        if b"holding" not in line:
            raise RuntimeError("the deadlock trap's lock holder did not start")

    # -- actions --------------------------------------------------------------------------------------------------
    def step(self, action: Action) -> StepResult:
        handler = {
            "list": self._list,
            "read": self._read,
            "search": self._search,
            "check": self._check,
            "answer": self._answer,
        }[action.act]
        result = handler(action.arg)
        size = len(result.observation)
        if size > self.settings.bomb_chars and result.outcome not in ("death", "success"):
            return StepResult(
                "error",
                f"[output of {size} chars is too large for the context and was cut]\n{result.observation}",
                "ContextOverflow",
                "context_bomb",
            )
        return result

    def _path(self, arg: str) -> Path | None:
        rel = PurePosixPath(arg.strip().strip("`'\"") or ".")
        if rel.is_absolute() or ".." in rel.parts or (rel.parts and rel.parts[0] == STATE_DIR):
            return None
        return self.root / rel

    def _list(self, arg: str) -> StepResult:
        path = self._path(arg)
        if path is None or not path.is_dir():
            return StepResult("error", f"no such directory: {arg}", "NotFound")
        entries = sorted(
            (p.name + "/" if p.is_dir() else p.name)
            for p in path.iterdir()
            if not p.name.startswith(".") and p.name != "__pycache__"
        )
        return StepResult("ok", "\n".join(entries) if entries else "(empty)")

    def _read(self, arg: str) -> StepResult:
        path = self._path(arg)
        if path is None or not path.is_file():
            return StepResult("error", f"no such file: {arg}", "NotFound")
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        rel = path.relative_to(self.root).as_posix()
        body = "\n".join(f"{i}: {line}" for i, line in enumerate(lines, start=1))
        return StepResult("ok", f"{rel} ({len(lines)} lines)\n{body}")

    def _search(self, arg: str) -> StepResult:
        needle = arg.strip()
        if len(needle) < 2:
            return StepResult("error", "search text must have at least 2 characters", "ToolError")
        hits: list[str] = []
        for path in sorted(self.root.rglob("*.py")):
            rel = path.relative_to(self.root)
            if rel.parts[0] == STATE_DIR or "__pycache__" in rel.parts:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if needle not in text:
                continue
            for number, line in enumerate(text.splitlines(), start=1):
                if needle in line:
                    hits.append(f"{rel.as_posix()}:{number}: {line.strip()}")
        if not hits:
            return StepResult("error", f"no match for {needle!r}", "NotFound")
        return StepResult("ok", f"{len(hits)} matches\n" + "\n".join(hits))

    def _answer(self, arg: str) -> StepResult:
        if check_answer(self.task, arg):
            return StepResult("success", f"correct: {arg.strip()}", solved=True)
        return StepResult("error", f"wrong answer: {arg.strip()[:80]}", "WrongAnswer")

    def _check(self, arg: str) -> StepResult:
        path = self._path(arg)
        if path is None or not path.is_file() or path.suffix != ".py":
            return StepResult("error", f"no such check script: {arg}", "NotFound")
        rel = path.relative_to(self.root).as_posix()
        spec = next((c for c in self.task.checks if c.path == rel), None)
        trap = spec.trap if spec is not None else None
        self.checks_run += 1
        lock = self._acquire_run_lock()
        if lock is None:
            holder = self._holder.pid if self._holder is not None else "unknown"
            return StepResult(
                "error",
                f"DEADLOCK {rel}: run.lock held by pid {holder} for {self.settings.lock_timeout_s:.1f}s (no progress)",
                "Deadlock",
                "deadlock",
            )
        try:
            result = self._run_check(rel, path, trap)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
        wiped = [p for p in self.tree.packages if not (self.root / p).is_dir()]
        if wiped:
            reason = f"{rel} deleted the sandbox sources ({', '.join(wiped)})"
            return StepResult("death", f"FATAL: {reason}", "Fatal", trap or "fatal", death_reason=reason)
        return result

    def _acquire_run_lock(self) -> IO[str] | None:
        fh = open(self.root / STATE_DIR / RUN_LOCK, "a")
        deadline = time.monotonic() + self.settings.lock_timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fh
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.close()
                    return None
                time.sleep(0.02)

    def _run_check(self, rel: str, path: Path, trap: TrapKind | None) -> StepResult:
        proc = subprocess.Popen(
            [self.settings.python, "-I", str(path)],
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=self.settings.check_timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return StepResult(
                "timeout",
                f"TIMEOUT {rel}: no result after {self.settings.check_timeout_s:.1f}s (killed)",
                "Timeout",
                trap or "hang",
            )
        text = out.decode("utf-8", errors="replace").strip()
        if proc.returncode == 0 and text.endswith("PASS"):
            return StepResult("ok", f"PASS {rel}", trap=trap)
        tail = text.splitlines()[-1] if text else f"exit status {proc.returncode}"
        return StepResult("error", f"FAIL {rel}: {tail[:200]}", "CheckFailed", trap)

    # -- the watchdog's lever -----------------------------------------------------------------------------------
    def deadlocked(self) -> bool:
        return self._holder is not None and self._holder.poll() is None

    def break_deadlock(self) -> StepResult:
        """Kill the process that holds ``run.lock`` while it waits for ``index.lock`` (the cycle's weak end)."""
        if not self.deadlocked():
            return StepResult("ok", "watchdog: no deadlock found")
        assert self._holder is not None
        pid = self._holder.pid
        _kill_group(self._holder)
        self._holder = None
        return StepResult(
            "ok",
            f"watchdog: run.lock held by pid {pid}, which waits for index.lock held by the harness: "
            f"deadlock broken, killed pid {pid}",
            trap="deadlock",
        )
