"""``phasef serve``: its arguments, its usage errors, and that the rest of the CLI starts without asyncssh."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from phasef_tui.commands.serve import parse_listen
from tests.spine_helpers import phasef
from tests.ssh_helpers import log_events, make_key, write_keys
from tests.tmux_helpers import wait_until


def test_listen_addresses() -> None:
    assert parse_listen("2222") == ("127.0.0.1", 2222)
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:2200") == ("::1", 2200)
    assert parse_listen(":2201") == ("127.0.0.1", 2201)
    for bad in ("", "port", "127.0.0.1:", "127.0.0.1:70000", "1.2.3.4:-1"):
        with pytest.raises(ValueError, match="expected \\[HOST:\\]PORT"):
            parse_listen(bad)


def test_the_cli_parser_does_not_import_asyncssh() -> None:
    code = (
        "import sys; from phasef_tui.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('asyncssh', 'textual', 'mlx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_usage_errors_name_what_is_wrong(tmp_path: Path) -> None:
    _key, pub = make_key(tmp_path, "alice")
    keys = write_keys(tmp_path / "authorized_keys", [pub])
    r = phasef("serve", "--ssh", "localhost:http", "--authorized-keys", str(keys), cwd=tmp_path)
    assert r.returncode == 2 and "--ssh 'localhost:http': expected [HOST:]PORT" in r.stderr
    r = phasef("serve", "--ssh", "0", "--authorized-keys", str(tmp_path / "nope"), cwd=tmp_path)
    assert r.returncode == 2 and "--authorized-keys" in r.stderr and "no such file" in r.stderr
    r = phasef("serve", "--ssh", "0", "--authorized-keys", str(keys), "--max-sessions", "0", cwd=tmp_path)
    assert r.returncode == 2 and "--max-sessions must be positive" in r.stderr
    serve = ("serve", "--ssh", "0", "--authorized-keys", str(keys))
    r = phasef(*serve, "--max-startups", "10:30:5", cwd=tmp_path)
    assert r.returncode == 2 and "--max-startups start 10 must be at least 1 and at most full 5" in r.stderr
    r = phasef(*serve, "--max-startups", "ten", cwd=tmp_path)
    assert r.returncode == 2 and "expected N or START:RATE:FULL" in r.stderr
    r = phasef(*serve, "--per-source-max-startups", "-1", cwd=tmp_path)
    assert r.returncode == 2 and "--per-source-max-startups must be 0 or more" in r.stderr
    r = phasef(*serve, "--preauth-timeout", "0", cwd=tmp_path)
    assert r.returncode == 2 and "--preauth-timeout must be positive" in r.stderr
    r = phasef("serve", "--ssh", "0", "--authorized-keys", str(keys), "--session", "ghost", cwd=tmp_path)
    assert r.returncode == 2 and "no session 'ghost'" in r.stderr
    host_key = tmp_path / "host_key"
    host_key.write_text("not a key")
    host_key.chmod(0o644)
    r = phasef("serve", "--ssh", "0", "--authorized-keys", str(keys), "--host-key", str(host_key), cwd=tmp_path)
    assert r.returncode == 1 and "chmod 600" in r.stderr
    r = phasef("serve", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--authorized-keys" in r.stdout and "--idle-timeout" in r.stdout


def test_every_numeric_flag_sets_its_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from phasef_tui.cli import build_parser
    from phasef_tui.commands import serve

    served: list[Any] = []
    monkeypatch.setattr(serve, "run_server", lambda settings, host_key: served.append(settings) or 0)
    _key, pub = make_key(tmp_path, "alice")
    keys = write_keys(tmp_path / "authorized_keys", [pub])
    argv = ["serve", "--ssh", "127.0.0.1:0", "--authorized-keys", str(keys), "--host-key", str(tmp_path / "hk")]
    argv += ["--sessions", str(tmp_path)]
    wanted = {}
    for n, (flag, setting, _positive) in enumerate(serve.LIMITS, start=7):
        argv += [flag, str(n)]
        wanted[setting] = n
    args = build_parser().parse_args(argv)
    assert args.func(args) == 0
    assert {name: getattr(served[0], name) for name in wanted} == wanted
    assert len(wanted) == 6 and served[0].max_startups.start == 10 and served[0].port == 0


def test_the_admission_flags_reach_the_server(tmp_path: Path) -> None:
    _key, pub = make_key(tmp_path, "alice")
    keys = write_keys(tmp_path / "authorized_keys", [pub])
    log = tmp_path / "ssh.jsonl"
    argv = [sys.executable, "-m", "phasef_tui.cli", "serve", "--ssh", "127.0.0.1:0", "--authorized-keys", str(keys)]
    argv += ["--host-key", str(tmp_path / "hk"), "--log", str(log), "--max-startups", "3"]
    argv += ["--per-source-max-startups", "2", "--preauth-timeout", "1"]
    server = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    silent: list[socket.socket] = []
    try:
        assert server.stdout is not None
        port = next(int(line.rsplit(":", 1)[1]) for line in server.stdout if line.startswith("listening on "))
        for source in ("127.0.0.2",) * 3 + ("127.0.0.3",) * 2:
            s = socket.socket()
            s.bind((source, 0))
            s.connect(("127.0.0.1", port))
            silent.append(s)
        wait_until(lambda: len(log_events(log, "closing")) == 3, 10, "the pre-auth timeout")
    finally:
        for s in silent:
            s.close()
        server.terminate()
        assert server.wait(30) == 0
    connects = [e["peer"].split(":")[0] for e in log_events(log, "connect")]
    assert sorted(connects) == ["127.0.0.2", "127.0.0.2", "127.0.0.3"]
    assert sorted(e["limit"] for e in log_events(log, "refused")) == ["full", "per-source"]
    assert all("within 1 s" in e["reason"] for e in log_events(log, "closing"))
