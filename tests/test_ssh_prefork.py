"""The pre-forked session server behind ``phasef serve --ssh``, with the real OpenSSH client.

Each SSH session is still a process of its own (own pid, own session and process group, own PTY, only the
environment the server built for it, no descriptor of the server or of other sessions), but it is forked from one
interpreter that has imported (and run) the TUI once, so its pages are shared copy-on-write. Resizes reach it, a
client that disconnects takes its process with it, and a session outlives the session server's death.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.spine_helpers import ONE_GATE_PROMPT, wait_for
from tests.ssh_helpers import (
    Served,
    log_events,
    make_key,
    memory_kb,
    parent_pid,
    run_ssh,
    ssh_argv,
    standin_server,
)
from tests.tmux_helpers import Tmux

pytestmark = pytest.mark.skipif(
    shutil.which("ssh") is None or shutil.which("tmux") is None, reason="needs the OpenSSH client and tmux"
)
SECRET = "sk-test-never-in-a-session-0123456789"


def _approver(folder: Path) -> tuple[Path, str]:
    key, public = make_key(folder, "alice")
    return key, f'environment="PHASEF_ROLE=approver" {public}'


def _status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict (``SigIgn``: the ignored signals, a hex mask)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _row(screen: str, index: int) -> str:
    rows = screen.splitlines()
    return rows[index] if index < len(rows) else ""


def _mapped_files(pid: int) -> set[str]:
    return {line.split(maxsplit=5)[5] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}


def _disconnect(tmux: Tmux, name: str) -> None:
    """The client leaves: OpenSSH's escape sequence (newline, ~.) closes the connection from the client side."""
    tmux.send(name, "Enter")
    tmux.send(name, "~.", literal=True)


def test_forked_sessions_are_separate_processes_with_only_their_own_environment(
    tmp_path: Path, tmux: Tmux, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # in the server's environment: must reach no session
    key, line = _approver(tmp_path)
    log = tmp_path / "ssh.jsonl"
    with standin_server(tmp_path, [line]) as server:
        (started,) = log_events(log, "session_server")
        zygote = started["pid"]
        assert zygote != os.getpid() and _alive(zygote)
        for name in ("one", "two"):  # one after the other, so that the log's order is the windows' order
            tmux.start(name, ssh_argv(server.port, key, "-tt"), 100, 30)
            screen = tmux.wait_for(name, "SIZE 100x30")
            assert "PHASEF_ROLE=approver" in screen and "OPENAI_API_KEY=-" in screen
        wait_for(lambda: len(log_events(log, "session_start")) == 2, 10, "two session starts")
        starts = log_events(log, "session_start")
        pids = [e["pid"] for e in starts]
        assert [e["start"] for e in starts] == ["fork", "fork"]
        assert len(set(pids)) == 2
        for pid in pids:
            assert parent_pid(pid) == zygote  # forked by the session server, not spawned by the SSH server
            assert os.getsid(pid) == pid and os.getpgid(pid) == pid  # a session and process group of its own
            assert sorted(os.listdir(f"/proc/{pid}/fd"), key=int) == ["0", "1", "2"]  # nothing else inherited
            assert SECRET.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
            tty = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)}
            assert len(tty) == 1 and next(iter(tty)).startswith("/dev/pts/")
        ttys = {os.readlink(f"/proc/{pid}/fd/0") for pid in pids}
        assert len(ttys) == 2  # a PTY each

        tmux.resize("one", 150, 45)
        tmux.wait_for("one", "SIZE 150x45")  # SIGWINCH reaches the forked process
        tmux.send("two", "k")
        tmux.wait_for("two", "GOT b'k'")
        assert "GOT b'k'" not in tmux.screen("one")

        _disconnect(tmux, "one")
        tmux.wait_exit("one")
        wait_for(lambda: not _alive(pids[0]), 10, "the disconnected session's process to end")
        assert _alive(pids[1]) and _alive(zygote)
        wait_for(lambda: len(log_events(log, "session_end")) == 1, 10, "the session end")
        # the client drops the connection (~.): seen as its end of file, or, when the session wrote to it first, as a
        # broken pipe (a race of the two sides under load)
        reason = log_events(log, "session_end")[0]["reason"]
        assert reason in ("client closed", "connection lost: [Errno 32] Broken pipe"), reason
        tmux.send("two", "z")
        tmux.wait_for("two", "GOT b'z'")  # the other session goes on
    assert not _alive(pids[1])
    wait_for(lambda: not _alive(zygote), 10, "the session server to exit with the SSH server")


def test_a_session_outlives_the_session_server_and_the_next_one_gets_a_new_one(tmp_path: Path, tmux: Tmux) -> None:
    key, line = _approver(tmp_path)
    log = tmp_path / "ssh.jsonl"
    with standin_server(tmp_path, [line]) as server:
        zygote = log_events(log, "session_server")[0]["pid"]
        tmux.start("one", ssh_argv(server.port, key, "-tt"))
        tmux.wait_for("one", "SIZE")
        os.kill(zygote, signal.SIGKILL)
        wait_for(lambda: not _alive(zygote), 10, "the session server to die")
        tmux.send("one", "k")
        tmux.wait_for("one", "GOT b'k'")  # the session is a process of its own: it goes on
        tmux.start("two", ssh_argv(server.port, key, "-tt"))
        tmux.wait_for("two", "SIZE")
        first, second = (e["pid"] for e in log_events(log, "session_start"))
        assert parent_pid(second) not in (zygote, os.getpid()) and _alive(parent_pid(second))
        tmux.send("one", "q")
        tmux.wait_exit("one")
        wait_for(lambda: not _alive(first), 10, "the first session's process to end")
        tmux.send("two", "q")
        assert tmux.wait_exit("two") == 0  # a session of the new session server reports its exit status
    ends = log_events(log, "session_end")
    assert sorted(e["reason"] for e in ends) == ["exited", "exited"]


def test_the_real_tui_is_forked_shares_its_pages_and_spawn_stays_selectable(tmp_path: Path, tmux: Tmux) -> None:
    served = Served(tmp_path)
    try:
        banner = "\n".join(served.banner)
        assert "session server pid " in banner and "each session is a process forked from it" in banner
        zygote = log_events(served.log, "session_server")[0]["pid"]
        for name in ("a", "b"):  # one after the other, so that the log's order is the windows' order
            tmux.start(name, served.ssh("-tt"), 100, 30)
            tmux.wait_for(name, ONE_GATE_PROMPT)
        starts = log_events(served.log, "session_start")
        pids = [e["pid"] for e in starts]
        assert [e["start"] for e in starts] == ["fork", "fork"] and len(set(pids)) == 2
        assert all(parent_pid(pid) == zygote for pid in pids)
        time.sleep(0.5)
        for pid in pids:
            memory = memory_kb(pid)
            # anonymous pages still shared with the session server and the other session: a fresh interpreter has
            # none (its only shared pages are the files it maps)
            assert memory["Shared_Dirty"] > 5 * 1024, memory
            assert memory["Pss"] < memory["Rss"] - 5 * 1024, memory
            # all a session imports was imported by the session server: a module imported after the fork would
            # cost every session its memory (an extension module shows as a file only the session maps)
            assert _mapped_files(pid) <= _mapped_files(zygote), _mapped_files(pid) - _mapped_files(zygote)

        tmux.resize("a", 150, 45)
        wait_for(lambda: "Quit" in _row(tmux.screen("a"), 44), 20, "the key bar to move to the new last row")
        _disconnect(tmux, "b")
        wait_for(lambda: not _alive(pids[1]), 15, "the disconnected TUI's process to end")
        assert _alive(pids[0])
        assert served.stop_server() == 0
        assert tmux.wait_exit("a") == 0
        wait_for(lambda: not _alive(pids[0]) and not _alive(zygote), 15, "the TUI and the session server to end")

        served.start_server("--no-prefork")
        assert "sessions start as new processes" in "\n".join(served.banner)
        tmux.start("c", served.ssh("-tt"), 100, 30)
        tmux.wait_for("c", ONE_GATE_PROMPT)
        last = log_events(served.log, "session_start")[-1]
        assert last["start"] == "spawn" and served.server is not None
        assert parent_pid(last["pid"]) == served.server.pid
        assert served.stop_server() == 0
        assert served.supervisor.poll() is None  # the run went on through all of it
    finally:
        served.close()


NOHUP = ("SIGHUP", "SIGINT", "SIGQUIT")
"""What ``nohup phasef serve ... &`` leaves ignored in the server and in what it starts without resetting them."""


@pytest.mark.parametrize(
    ("serve_args", "ignoring"),
    [((), ()), (("--no-prefork",), ()), ((), NOHUP), (("--no-prefork",), NOHUP)],
    ids=["forked", "spawned", "forked-nohup", "spawned-nohup"],
)
def test_a_session_ends_when_the_ssh_server_is_killed(
    tmp_path: Path, tmux: Tmux, serve_args: tuple[str, ...], ignoring: tuple[str, ...]
) -> None:
    # the server cannot hang up on its sessions when it is killed; its end closes their terminals' master side, and
    # a session's terminal is its controlling terminal (as sshd makes it), so the kernel hangs up on the session;
    # a session starts with that signal at its default action even when the server ignores it (under nohup)
    served = Served(tmp_path, *serve_args, ignoring=ignoring)
    try:
        tmux.start("a", served.ssh("-tt"), 100, 30)
        tmux.wait_for("a", ONE_GATE_PROMPT)
        (start,) = log_events(served.log, "session_start")
        pid = start["pid"]
        assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[4]) != 0  # tty_nr: it has one
        assert served.server is not None
        hup = 1 << (signal.SIGHUP - 1)
        if not serve_args:  # the session server inherits what the server was started with (it catches SIGHUP)
            zygote = log_events(served.log, "session_server")[0]["pid"]
            assert bool(int(_status(zygote)["SigIgn"], 16) & hup) == bool(ignoring)
        assert not int(_status(pid)["SigIgn"], 16) & hup  # the session starts with SIGHUP's default action
        os.kill(served.server.pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 20, "the session's process to end after the server was killed")
        assert served.supervisor.poll() is None  # the run goes on
    finally:
        served.close()


def test_the_cli_in_a_forked_session_answers_as_a_new_interpreter_would(tmp_path: Path) -> None:
    # the session server runs `-m phasef_tui.cli ARGS` by calling the CLI it imported, with the parser it built
    key, line = _approver(tmp_path)
    fresh = subprocess.run(
        [sys.executable, "-m", "phasef_tui.cli", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    commands = iter([["--version"], ["attach", "--bogus"], ["--version"]])
    log = tmp_path / "ssh.jsonl"
    with standin_server(
        tmp_path, [line], preload=True, command=lambda *_: [sys.executable, "-m", "phasef_tui.cli", *next(commands)]
    ) as server:
        # (the client's own output, not a tmux pane: a pane whose program exits within milliseconds sometimes shows
        # nothing although the client printed it)
        for shown, code in (
            (fresh.stdout.strip(), 0),
            ("phasef: error: unrecognized arguments: --bogus", 2),
            (fresh.stdout.strip(), 0),  # the parser a session used is still whole for the next one
        ):
            result = run_ssh(ssh_argv(server.port, key, "-tt"), timeout=60)
            assert shown in result.stdout and result.returncode == code, result
        assert [e["start"] for e in log_events(log, "session_start")] == ["fork", "fork", "fork"]


def test_a_parser_that_rejects_the_warm_up_is_not_shared(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from phasef_tui import cli
    from phasef_tui.ssh import warmup

    def without_attach() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="phasef")
        parser.add_subparsers(dest="command").add_parser("status")
        return parser

    monkeypatch.setattr(cli, "build_parser", without_attach)
    assert warmup.ahead("the CLI's parser was not built", warmup.share_cli_parser) is False
    assert cli.build_parser is without_attach  # each session builds its own, as a new interpreter does
    err = capsys.readouterr().err
    assert "phasef session server: the CLI's parser was not built ahead: SystemExit(2)" in err
    assert "invalid choice: 'attach'" in err
    monkeypatch.undo()
    parsed = []
    assert warmup.ahead("x", lambda: parsed.append(cli.build_parser().parse_args(["--version"]))) is False
    assert not parsed and "phasef " in capsys.readouterr().out  # --version printed and exited: reported, not raised


def test_without_a_session_server_sessions_are_spawned(
    tmp_path: Path, tmux: Tmux, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a broken installation as the session server sees it: its module does not import, so it never gets ready
    shadow = tmp_path / "shadow" / "phasef_tui"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    key, line = _approver(tmp_path)
    log = tmp_path / "ssh.jsonl"
    with standin_server(tmp_path, [line], cwd=tmp_path) as server:  # (not the source tree, first on sys.path)
        (error,) = log_events(log, "error")
        assert error["where"] == "session server" and "each session is spawned instead" in error["error"]
        assert not log_events(log, "session_server")
        tmux.start("one", ssh_argv(server.port, key, "-tt"))
        tmux.wait_for("one", "SIZE")
        (start,) = log_events(log, "session_start")
        assert start["start"] == "spawn" and parent_pid(start["pid"]) == os.getpid()
        tmux.send("one", "q")
        assert tmux.wait_exit("one") == 0


def test_a_section_validator_is_built_once_per_process_and_still_reports_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the session server reads the plan's stages once in its warm-up; each forked session reads them again (the
    # file may have changed) with the validator built there, instead of generating pydantic's schema per session
    import pydantic

    from pipeline import config_section
    from pipeline.config import read_section

    built: list[object] = []

    class Counting(pydantic.TypeAdapter):  # type: ignore[type-arg]
        def __init__(self, annotation: object) -> None:
            built.append(annotation)
            super().__init__(annotation)

    monkeypatch.setattr(pydantic, "TypeAdapter", Counting)
    monkeypatch.setattr(config_section, "_ADAPTERS", {})
    plan = tmp_path / "config.toml"
    good = '[stages.a]\ntitle = "A"\n\n[stages.a.steps.s]\nkind = "shell"\ncommand = "true"\n'
    plan.write_text(good)
    first = read_section(plan, "stages")
    assert list(first.value) == ["a"] and first.issues == []
    plan.write_text(good + '\n[stages.b]\ntitle = "B"\n\n[stages.b.steps.t]\nkind = "shell"\nretries = "many"\n')
    second = read_section(plan, "stages")
    # the bad step left out, each problem reported with its file, line and field, as with a validator of its own
    assert list(second.value) == ["a", "b"] and second.value["b"].steps == {}
    assert [(p.file, p.line, p.field) for p in second.issues] == [
        (str(plan), 13, "stages.b.steps.t.retries"),
        (str(plan), 11, "stages.b.steps.t"),
    ]
    plan.write_text(good)
    assert list(read_section(plan, "stages").value) == ["a"]
    assert len(built) == 1  # one validator for the three reads


def test_gathered_code_runs_as_before_and_the_originals_stay_alive() -> None:
    # the session server gives the functions its warm-up ran fresh copies of their code (allocated together, so
    # that a session copies fewer pages on write): same behaviour, same line numbers, the old code kept alive
    import traceback
    import types

    from phasef_tui.ssh import warmup

    def make_counter(start: int) -> types.FunctionType:
        def step(by: int = 1) -> list[int]:
            return [start + by * i for i in range(3)]  # a comprehension: code nested in code

        return step  # type: ignore[return-value]

    class Shape:
        def area(self, side: float, *, scale: float = 2.0) -> float:
            return side * side * scale

    def numbers(n: int) -> object:
        yield from range(n)

    def fails() -> None:
        raise ValueError("boom")

    recorded: dict[types.CodeType, None] = {}
    with warmup.calls_recorded(recorded):
        before = (make_counter(1)(2), Shape().area(3.0), list(numbers(3)))  # type: ignore[call-overload]
    assert make_counter.__code__ in recorded and Shape.area.__code__ in recorded
    assert fails.__code__ not in recorded  # only what was called
    old = {f: f.__code__ for f in (make_counter, Shape.area, numbers, fails)}
    warmup.gather_code(list(recorded))
    for f in (make_counter, Shape.area, numbers):
        assert f.__code__ is not old[f] and f.__code__ == old[f], f  # a copy, equal to the original
        assert any(c is old[f] for c in warmup.RETIRED_CODE)  # the original still alive: no hole left
    assert fails.__code__ is old[fails]
    nested = [c for c in make_counter.__code__.co_consts if isinstance(c, types.CodeType)]
    assert make_counter(1).__code__ is nested[0]  # closures made from now on use the copied nested code
    assert (make_counter(1)(2), Shape().area(3.0), list(numbers(3))) == before  # type: ignore[call-overload]
    assert Shape().area(3.0, scale=0.5) == 4.5
    with pytest.raises(TypeError) as raised:
        make_counter(1)("x")  # type: ignore[arg-type]
    frame = traceback.extract_tb(raised.value.__traceback__)[-1]
    assert frame.name == "<listcomp>" and frame.line is not None and "start + by * i" in frame.line


def test_the_code_of_modules_the_warm_up_cannot_run_is_gathered_whole() -> None:
    # the terminal's driver, the journal's reader thread and file follower run only in a session: their modules'
    # functions are gathered whole (methods, properties, class and static methods, nested code), nothing imported
    import types

    from phasef_tui.ssh import warmup

    module = types.ModuleType("phasef_probe_module")
    exec(
        "import os.path\n"
        "from os.path import join\n"
        "def top(n):\n    return [i * 2 for i in range(n)]\n"
        "class Thing:\n"
        "    def method(self):\n        return 1\n"
        "    @property\n    def size(self):\n        return 2\n"
        "    @size.setter\n    def size(self, value):\n        self.v = value\n"
        "    @classmethod\n    def make(cls):\n        return cls()\n"
        "    @staticmethod\n    def helper():\n        return 3\n",
        module.__dict__,
    )
    sys.modules[module.__name__] = module
    try:
        thing = module.__dict__["Thing"]
        codes = warmup.module_code((module.__name__, "phasef_probe_not_imported"))
        expected = [
            module.__dict__["top"].__code__,
            thing.method.__code__,
            thing.size.fget.__code__,
            thing.size.fset.__code__,
            thing.make.__func__.__code__,
            thing.helper.__code__,
        ]
        assert all(code in codes for code in expected)
        nested = [c for c in module.__dict__["top"].__code__.co_consts if isinstance(c, types.CodeType)]
        assert nested and nested[0] in codes  # the comprehension in top()
        assert module.__dict__["join"].__code__ not in codes  # imported from elsewhere: not this module's
        assert warmup.gather_code(codes) == 6
        assert module.__dict__["top"].__code__ is not expected[0] and module.__dict__["top"](3) == [0, 2, 4]
        assert (thing().method(), thing().size, thing.make().helper()) == (1, 2, 3)
    finally:
        del sys.modules[module.__name__]


def test_the_session_server_answers_each_request_over_its_report_socket(tmp_path: Path) -> None:
    # the protocol, against a real session server (no preload): a bad request gets an error and no process; one
    # without its two descriptors is dropped; a good one gets the pid, then the exit status once it is reaped
    import json
    import os
    import socket

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server = subprocess.Popen(
        [sys.executable, "-m", "phasef_tui.ssh.zygote", "--fd", str(theirs.fileno()), "--no-preload"],
        pass_fds=[theirs.fileno()],
        stdin=subprocess.DEVNULL,
    )
    theirs.close()
    try:
        ours.settimeout(60)
        assert json.loads(ours.recv(4096))["ready"] == server.pid

        def request(message: bytes, with_fds: int = 2) -> socket.socket:
            report, report_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            primary, secondary = os.openpty()
            fds = [secondary, report_theirs.fileno()][:with_fds]
            socket.send_fds(ours, [message], fds)
            os.close(secondary)
            os.close(primary)
            report_theirs.close()
            report.settimeout(60)
            return report

        bad = request(b"not json")
        assert json.loads(bad.recv(4096))["error"].startswith("bad request: ")
        assert bad.recv(4096) == b""  # closed: no process was started
        short = request(json.dumps({"argv": ["true"], "env": {}}).encode(), with_fds=1)
        assert short.recv(4096) == b""  # dropped, its descriptor closed
        marker = tmp_path / "ran"
        code = f"open({str(marker)!r}, 'w').write('x'); raise SystemExit(3)"
        good = request(json.dumps({"argv": [sys.executable, "-c", code], "env": {}, "cwd": str(tmp_path)}).encode())
        pid = json.loads(good.recv(4096))["pid"]
        assert pid > 0 and pid != server.pid
        assert json.loads(good.recv(4096)) == {"exit": 3}
        assert marker.read_text() == "x"
    finally:
        ours.close()  # the server sees its control socket close and exits
        assert server.wait(60) == 0


def test_a_session_goes_on_from_the_view_the_session_server_read_ahead(tmp_path: Path, tmux: Tmux) -> None:
    # the session server read the session ahead while its gate waited; the run then went on. A session forked
    # after that shows the session as it is now, not as the server read it
    from tests.spine_helpers import approve, has_event

    served = Served(tmp_path)
    try:
        (started,) = log_events(served.log, "session_server")
        assert started["read_ahead"] == str(served.session.resolve())  # read while the gate waited
        r = approve(tmp_path, "demo", "B.release", "go", "alice", "evidence read", "--override")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: has_event(served.session, "run_finished"), 60, "the run to finish")
        tmux.start("late", served.ssh("-tt"), 120, 35)
        screen = tmux.wait_for("late", "B.release GO by alice")
        assert ONE_GATE_PROMPT not in screen  # (the gate the server saw waiting is signed)
        assert [e["start"] for e in log_events(served.log, "session_start")] == ["fork"]
        assert served.stop_server() == 0
        assert tmux.wait_exit("late") == 0
    finally:
        served.close()
