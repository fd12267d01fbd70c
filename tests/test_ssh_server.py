"""The SSH server against the real OpenSSH client (and asyncssh's client for what ``ssh`` cannot ask for).

Sessions here run a small terminal program in place of the TUI, so each test sees exactly what a session receives;
tests/test_ssh_acceptance.py drives the real TUI.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import asyncssh
import pytest

from phasef_tui.ssh.admission import MaxStartups
from phasef_tui.ssh.server import SHUTDOWN_MESSAGE
from phasef_tui.ssh.session import NO_TERMINAL, NO_TERMINAL_FOR_KEY
from tests.ssh_helpers import fingerprint, log_events, make_key, run_ssh, ssh_argv, standin_server, write_keys
from tests.tmux_helpers import Tmux, wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("ssh") is None or shutil.which("tmux") is None, reason="needs the OpenSSH client and tmux"
)


def _approver(tmp_path: Path, name: str = "alice") -> tuple[Path, str]:
    key, pub = make_key(tmp_path, name)
    return key, f'environment="PHASEF_ROLE=approver" {pub}'


def test_session_gets_identity_terminal_and_colours_but_no_secrets_and_follows_resizes(
    tmp_path: Path, tmux: Tmux, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-of-the-server")
    key, line = _approver(tmp_path)
    with standin_server(tmp_path, [line]) as server:
        argv = ssh_argv(server.port, key, "-tt", "-o", "SetEnv=COLORTERM=truecolor PHASEF_ROLE=approver")
        tmux.start("a", argv, 100, 30)
        screen = tmux.wait_for("a", "SIZE 100x30").replace("\n", "")
        assert "PHASEF_OPERATOR=alice PHASEF_ROLE=approver" in screen
        assert f"PHASEF_KEY_FINGERPRINT={fingerprint(key)}" in screen
        assert "TERM=xterm-256color COLORTERM=truecolor" in screen
        assert "LINES=- COLUMNS=- OPENAI_API_KEY=-" in screen
        assert f"ARGS={tmp_path / 'sessions' / 'demo'},alice" in screen
        tmux.resize("a", 132, 43)
        tmux.wait_for("a", "SIZE 132x43")
        tmux.send("a", "Escape")  # a lone Escape reaches the program as one byte, as in a local terminal
        tmux.wait_for("a", "GOT b'\\x1b'")
        tmux.send("a", "q")
        assert tmux.wait_exit("a") == 0
    start = log_events(tmp_path / "ssh.jsonl", "session_start")[0]
    end = log_events(tmp_path / "ssh.jsonl", "session_end")[0]
    for event in (start, end):
        assert event["operator"] == "alice" and event["role"] == "approver" and event["user"] == "operator"
        assert event["key"] == fingerprint(key) and event["peer"].startswith("127.0.0.1:")
        assert event["term"] == "xterm-256color"
    assert start["size"] == "100x30" and end["size"] == "132x43"
    assert end["reason"] == "exited" and end["exit_code"] == 0 and end["duration_s"] > 0
    assert "sk-secret" not in (tmp_path / "ssh.jsonl").read_text()


def test_a_client_cannot_raise_its_own_role(tmp_path: Path, tmux: Tmux) -> None:
    key, pub = make_key(tmp_path, "victor")
    with standin_server(tmp_path, [pub]) as server:
        tmux.start("v", ssh_argv(server.port, key, "-tt", "-o", "SetEnv=PHASEF_ROLE=approver PHASEF_OPERATOR=root"))
        screen = tmux.wait_for("v", "SIZE").replace("\n", "")
        assert "PHASEF_OPERATOR=victor PHASEF_ROLE=viewer" in screen


def test_without_a_terminal_one_line_and_exit_1_and_commands_and_subsystems_are_refused(tmp_path: Path) -> None:
    key, line = _approver(tmp_path)
    nopty_key, nopty_pub = make_key(tmp_path, "nora")
    with standin_server(tmp_path, [line, f"no-pty {nopty_pub}"]) as server:
        r = run_ssh(ssh_argv(server.port, key, "-T"))
        assert (r.returncode, r.stdout, r.stderr) == (1, "", NO_TERMINAL + "\n")
        r = run_ssh([*ssh_argv(server.port, key, "-T"), "cat", "/etc/passwd"])
        assert r.returncode == 255 and "exec request failed" in r.stderr and r.stdout == ""
        r = run_ssh([*ssh_argv(server.port, key, "-s"), "sftp"])
        assert r.returncode == 255 and "subsystem request failed" in r.stderr
        r = run_ssh(ssh_argv(server.port, nopty_key, "-tt"))
        assert r.returncode == 1 and NO_TERMINAL_FOR_KEY in r.stderr
    refused = log_events(tmp_path / "ssh.jsonl", "refused")
    assert {e["what"] for e in refused} >= {"session", "exec", "subsystem sftp", "pty"}
    assert not log_events(tmp_path / "ssh.jsonl", "session_start")


def test_unknown_keys_and_passwords_are_refused_and_a_removed_key_at_once(tmp_path: Path) -> None:
    key, line = _approver(tmp_path)
    stranger, _ = make_key(tmp_path, "mallory")
    with standin_server(tmp_path, [line]) as server:
        r = run_ssh(ssh_argv(server.port, stranger, "-tt"))
        assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
        password = ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"]
        r = run_ssh(ssh_argv(server.port, key, *password, "-tt"))
        assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr

        async def try_password(method: str) -> str:
            options = {"password": "hunter2"} if method == "password" else {"kbdint_auth": True, "password": "x"}
            try:
                async with asyncssh.connect(
                    "127.0.0.1",
                    server.port,
                    username="operator",
                    known_hosts=None,
                    client_keys=None,
                    agent_path=None,
                    config=None,
                    preferred_auth=method,
                    **options,
                ):
                    return "logged in"
            except asyncssh.PermissionDenied as exc:
                return f"denied: {exc.reason}"

        for method in ("password", "keyboard-interactive"):
            assert asyncio.run(try_password(method)).startswith("denied")
        # logged in (then refused for lack of a PTY) while the key is listed
        assert run_ssh(ssh_argv(server.port, key, "-T")).returncode == 1
        write_keys(tmp_path / "authorized_keys", ["# alice's key was removed"])
        r = run_ssh(ssh_argv(server.port, key, "-T"))
        assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
    refusals = log_events(tmp_path / "ssh.jsonl", "auth_refused")
    assert any(e["key"] == fingerprint(stranger) and "not in" in e["reason"] for e in refusals)
    assert any(e["key"] == fingerprint(key) for e in refusals)
    assert "hunter2" not in (tmp_path / "ssh.jsonl").read_text()


def test_forwarding_of_any_kind_is_refused(tmp_path: Path) -> None:
    key, line = _approver(tmp_path)
    with standin_server(tmp_path, [line]) as server:
        r = run_ssh(ssh_argv(server.port, key, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"))
        assert r.returncode == 255 and "forwarding failed" in r.stderr

        async def forwards() -> list[str]:
            results = []
            async with asyncssh.connect(
                "127.0.0.1",
                server.port,
                username="operator",
                known_hosts=None,
                client_keys=[str(key)],
                agent_path=None,
                config=None,
            ) as conn:
                for attempt in (
                    lambda: conn.open_connection("127.0.0.1", 22),
                    lambda: conn.open_unix_connection("/tmp/x.sock"),
                    lambda: conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 9),
                ):
                    try:
                        await attempt()
                        results.append("allowed")
                    except (asyncssh.ChannelOpenError, asyncssh.ChannelListenError) as exc:
                        results.append(type(exc).__name__)
            return results

        assert asyncio.run(forwards()) == ["ChannelOpenError", "ChannelOpenError", "ChannelListenError"]
    whats = [e["what"] for e in log_events(tmp_path / "ssh.jsonl", "refused")]
    assert "tcp forwarding to 127.0.0.1:22" in whats and "unix forwarding to /tmp/x.sock" in whats


def test_a_crash_ends_only_that_session(tmp_path: Path, tmux: Tmux) -> None:
    key, line = _approver(tmp_path)
    with standin_server(tmp_path, [line]) as server:
        tmux.start("one", ssh_argv(server.port, key, "-tt"))
        tmux.start("two", ssh_argv(server.port, key, "-tt"))
        tmux.wait_for("one", "SIZE")
        tmux.wait_for("two", "SIZE")
        tmux.send("one", "x")  # the program aborts (SIGABRT)
        assert tmux.wait_exit("one") == 128 + signal.SIGABRT
        tmux.send("two", "k")
        tmux.wait_for("two", "GOT b'k'")
        tmux.start("three", ssh_argv(server.port, key, "-tt"))
        tmux.wait_for("three", "SIZE")
    ends = log_events(tmp_path / "ssh.jsonl", "session_end")
    assert any(e["exit_code"] == -signal.SIGABRT for e in ends)


def test_session_cap_idle_timeout_and_stalled_clients(tmp_path: Path, tmux: Tmux) -> None:
    key, line = _approver(tmp_path)
    with standin_server(tmp_path, [line], max_sessions=1, idle_timeout=1.5) as server:
        tmux.start("first", ssh_argv(server.port, key, "-tt"))
        tmux.wait_for("first", "SIZE")
        r = run_ssh(ssh_argv(server.port, key, "-tt"))
        assert r.returncode == 1 and "1 operator sessions are open, the most this server allows" in r.stderr
        tmux.wait_for("first", "no input for 1.5 s; disconnected")
        assert tmux.wait_exit("first") == 1
    ends = log_events(tmp_path / "ssh.jsonl", "session_end")
    assert [e["reason"] for e in ends] == ["idle"]


def test_a_client_that_takes_no_output_is_bounded_then_cut_off(tmp_path: Path) -> None:
    key, line = _approver(tmp_path)
    high = 64 * 1024
    log = tmp_path / "ssh.jsonl"
    with standin_server(tmp_path, [line], stall_timeout=1.5, output_high_water=high) as server:

        async def flood() -> tuple[int, str]:
            async with asyncssh.connect(
                "127.0.0.1",
                server.port,
                username="operator",
                known_hosts=None,
                client_keys=[str(key)],
                agent_path=None,
                config=None,
            ) as conn:
                chan, _session = await conn.create_session(
                    asyncssh.SSHClientSession, term_type="xterm", term_size=(80, 24), encoding=None, window=high
                )
                await asyncio.sleep(0.5)
                chan.write(b"f")  # the program writes without end
                await asyncio.sleep(0.3)
                chan.pause_reading()  # ...and this client stops taking it
                peak = await asyncio.to_thread(
                    server.call, lambda: max(s._chan.get_write_buffer_size() for s in server.service.hub.sessions)
                )
                started = time.monotonic()
                await asyncio.to_thread(wait_until, lambda: log_events(log, "session_end"), 20, "the stall")
                waited = time.monotonic() - started
                chan.resume_reading()  # what was queued before the cut arrives, then the close
                await asyncio.wait_for(chan.wait_closed(), 20)
                return peak, waited

        peak, waited = asyncio.run(flood())
        # the channel's queue stays near its high-water mark: the program is paused, not buffered without end
        assert peak <= high + 65536
        assert 0.5 < waited < 10
        sessions = server.call(lambda: len(server.service.hub.sessions))  # type: ignore[union-attr]
        assert sessions == 0
    ends = log_events(log, "session_end")
    assert ends[0]["reason"].startswith("stalled")


def test_logins_are_bounded_in_time_and_number(tmp_path: Path) -> None:
    key, line = _approver(tmp_path)
    with standin_server(tmp_path, [line], login_timeout=1.0, max_startups=MaxStartups.parse("2")) as server:
        quiet = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        for s in quiet:
            s.settimeout(10)
            assert s.recv(64).startswith(b"SSH-2.0-")
        wait_until(lambda: len(log_events(tmp_path / "ssh.jsonl", "connect")) == 2, 5, "two connections")
        extra = socket.create_connection(("127.0.0.1", server.port))
        extra.settimeout(10)
        assert extra.recv(64) == b""  # dropped: two connections are already logging in
        started = time.monotonic()
        for s in quiet:
            while s.recv(4096):
                pass  # the server closes them when the login time is up
        assert time.monotonic() - started < 5
        for s in [*quiet, extra]:
            s.close()
        r = run_ssh(ssh_argv(server.port, key, "-T"))
        assert r.returncode == 1 and NO_TERMINAL in r.stderr
    refused = log_events(tmp_path / "ssh.jsonl", "refused")
    assert any(e["reason"] == "too many connections logging in" for e in refused)


def test_shutdown_detaches_every_session_and_stops_their_programs(tmp_path: Path, tmux: Tmux) -> None:
    key, line = _approver(tmp_path)
    with standin_server(tmp_path, [line]) as server:
        tmux.start("a", ssh_argv(server.port, key, "-tt"))
        tmux.start("b", ssh_argv(server.port, key, "-tt"))
        tmux.wait_for("a", "SIZE")
        tmux.wait_for("b", "SIZE")
        pids = [e["pid"] for e in log_events(tmp_path / "ssh.jsonl", "session_start")]
        server.shutdown()
        for name in ("a", "b"):
            tmux.wait_for(name, SHUTDOWN_MESSAGE)
            assert tmux.wait_exit(name) == 0
            assert "\x1b[?1049h" not in tmux.screen(name)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    ends = log_events(tmp_path / "ssh.jsonl", "session_end")
    assert sorted(e["reason"] for e in ends) == ["server shutdown", "server shutdown"]


def test_without_a_fixed_session_operators_get_the_newest_one(tmp_path: Path) -> None:
    from phasef_tui.ssh.connection_log import ConnectionLog
    from phasef_tui.ssh.hub import ServeSettings, SessionHub

    root = tmp_path / "sessions"
    settings = ServeSettings(authorized_keys=tmp_path / "k", host_key=tmp_path / "h", sessions_root=root)
    hub = SessionHub(settings, ConnectionLog(None))
    folder, why = hub.session_dir()
    assert folder is None and why.startswith("phasef: nothing to attach to: no sessions under")
    for name, age in (("old", 100), ("new", 0)):
        (root / name).mkdir(parents=True)
        journal = root / name / "journal.jsonl"
        journal.write_text("{}\n")
        os.utime(journal, (time.time() - age, time.time() - age))
    assert hub.session_dir() == ((root / "new").resolve(), "")


def test_keepalives_find_a_client_that_stopped_answering(tmp_path: Path) -> None:
    key, line = _approver(tmp_path)
    log = tmp_path / "ssh.jsonl"
    with standin_server(tmp_path, [line], keepalive_interval=0.5, keepalive_count_max=2) as server:
        client = subprocess.Popen(
            [*ssh_argv(server.port, key, "-tt")],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: log_events(log, "session_start"), 20, "the session")
            client.send_signal(signal.SIGSTOP)  # frozen: it answers nothing, keepalives included
            ends = wait_until(lambda: log_events(log, "session_end"), 20, "the server to give up on the client")
            assert ends[0]["reason"].startswith("connection lost") and "keepalive" in ends[0]["reason"]
            assert ends[0]["duration_s"] < 15
        finally:
            client.send_signal(signal.SIGCONT)
            client.kill()
            client.wait(10)


def _silent_connections(port: int, source: str, count: int) -> list[socket.socket]:
    """``count`` TCP connections from ``source`` (a loopback address) that never send a byte."""
    conns = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        conns.append(s)
    return conns


def test_half_open_connections_from_one_address_cannot_lock_out_an_operator(tmp_path: Path, tmux: Tmux) -> None:
    key, line = _approver(tmp_path)
    log = tmp_path / "ssh.jsonl"
    # without the per-source limit and with a hard cap of 10 (the old behaviour), 30 silent connections from
    # 127.0.0.2 leave nothing for the operator: this is the lock-out being guarded against
    with standin_server(tmp_path, [line], max_startups=MaxStartups.parse("10"), per_source_startups=0) as server:
        silent = _silent_connections(server.port, "127.0.0.2", 30)
        wait_until(lambda: len(log_events(log, "connect")) == 10, 10, "ten connections logging in")
        r = run_ssh(ssh_argv(server.port, key, "-T"))
        assert r.returncode == 255  # reset before the version exchange
        for s in silent:
            s.close()
    log.unlink()

    # the defaults: 4 per address, 10:30:100; the silent ones are also closed after --preauth-timeout
    with standin_server(tmp_path, [line], preauth_timeout=2.0) as server:
        silent = _silent_connections(server.port, "127.0.0.2", 30)
        wait_until(lambda: len(log_events(log, "refused")) == 26, 10, "26 of the 30 to be dropped")
        started = time.monotonic()
        tmux.start("op", ssh_argv(server.port, key, "-tt"))
        tmux.wait_for("op", "SIZE 100x30", timeout=10)  # the operator's first frame
        assert time.monotonic() - started < 5
        tmux.send("op", "q")
        assert tmux.wait_exit("op") == 0
        closed_at = []
        for s in silent:
            while True:
                try:
                    if not s.recv(4096):
                        break
                except ConnectionResetError:
                    break
            closed_at.append(time.monotonic() - started)
            s.close()
        assert max(closed_at) < 8  # the 4 admitted ones went at the pre-auth timeout, not the 30 s login timeout
    connects = log_events(log, "connect")
    assert [e["peer"].split(":")[0] for e in connects].count("127.0.0.2") == 4
    refused = [e for e in log_events(log, "refused") if e["what"] == "connection"]
    assert len(refused) == 26 and all(e["peer"].startswith("127.0.0.2:") for e in refused)
    assert {e["reason"] for e in refused} == {"too many connections logging in from 127.0.0.2"}
    assert {e["limit"] for e in refused} == {"per-source"}
    closing = [e for e in log_events(log, "closing") if e["peer"].startswith("127.0.0.2:")]
    assert len(closing) == 4 and all("key exchange within 2 s" in e["reason"] for e in closing)
    assert any(e["operator"] == "alice" for e in log_events(log, "session_start"))


def test_many_addresses_slow_operators_down_but_cannot_lock_them_out(tmp_path: Path) -> None:
    key, line = _approver(tmp_path)
    log = tmp_path / "ssh.jsonl"
    with standin_server(tmp_path, [line]) as server:  # 10:30:100, 4 per address
        # one silent connection from each of 60 addresses: past 10 logging in, new ones are dropped at random
        silent = [s for n in range(3, 63) for s in _silent_connections(server.port, f"127.0.0.{n}", 1)]
        wait_until(lambda: len(log_events(log, "connect")) + len(log_events(log, "refused")) == 60, 10, "all 60")
        admitted = len(log_events(log, "connect"))
        assert 10 < admitted < 60
        early = [e for e in log_events(log, "refused") if e.get("limit") == "random-early-drop"]
        assert len(early) == 60 - admitted
        # an operator gets through within a few tries (each try is dropped with p = 0.3..0.7 here)
        tries = []
        for _ in range(20):
            r = run_ssh(ssh_argv(server.port, key, "-T"))
            tries.append(r.returncode)
            if r.returncode == 1 and NO_TERMINAL in r.stderr:
                break
        assert tries[-1] == 1, tries
        for s in silent:
            s.close()


def test_agent_x11_and_environment_requests_are_refused_each_with_a_log_line(tmp_path: Path, tmux: Tmux) -> None:
    key, line = _approver(tmp_path)
    log = tmp_path / "ssh.jsonl"
    agent_socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_socket)], stdout=subprocess.DEVNULL)
    try:
        wait_until(agent_socket.exists, 10, "the agent")
        with standin_server(tmp_path, [line]) as server:
            # a real agent for the client, so that ``ssh -A`` really asks for forwarding
            argv = [a if a != "IdentityAgent=none" else f"IdentityAgent={agent_socket}" for a in ssh_argv(
                server.port, key, "-tt", "-A", "-X", "-o", "SetEnv=COLORTERM=truecolor SECRET_TOKEN=hunter2 LANG=C"
            )]  # fmt: skip
            tmux.start("a", argv, env={"DISPLAY": ":7"})
            screen = tmux.wait_for("a", "SIZE").replace("\n", "")
            assert "COLORTERM=truecolor" in screen  # the session itself goes on
            tmux.send("a", "q")
            assert tmux.wait_exit("a") == 0
    finally:
        agent.terminate()
        agent.wait(10)
    refused = {e["what"]: e["reason"] for e in log_events(log, "refused")}
    assert refused["agent forwarding"] == "forwarding is off"
    assert refused["x11 forwarding"] == "forwarding is off"
    assert refused["env SECRET_TOKEN LANG"] == "only COLORTERM and NO_COLOR are taken from the client"
    assert "hunter2" not in log.read_text()
    assert all(e["operator"] == "alice" and e["key"] == fingerprint(key) for e in log_events(log, "refused"))
