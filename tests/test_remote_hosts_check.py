"""``phasef hosts check`` against a real SSH server on loopback (tests/remote_helpers.py), through the real CLI."""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path

from tests.remote_helpers import LoopbackHost, loopback_host
from tests.spine_helpers import phasef, write_plan

STAGES = '[stages.A]\ntitle = "A"\n[stages.A.steps.work]\nkind = "shell"\ncommand = "true"\n'


def test_hosts_check_reports_each_host_and_fails_when_one_is_unusable(tmp_path: Path) -> None:
    down = LoopbackHost(tmp_path / "down").start()
    down.stop()
    with loopback_host(tmp_path / "up") as up:
        plan = up.hosts_toml("up", python=sys.executable) + down.hosts_toml("down", connect_timeout=2) + STAGES
        write_plan(tmp_path, plan)
        r = phasef("hosts", "check", "--json", cwd=tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        doc = json.loads(r.stdout)
        by_name = {h["name"]: h for h in doc["hosts"]}
        assert doc["usable"] is False
        good, bad = by_name["up"], by_name["down"]
        assert good["usable"] is True and good["python"] == platform.python_version()
        assert good["system"] == platform.system() and good["machine"] == platform.machine()
        assert good["workdir"] == str(up.workdir) and up.workdir.is_dir()
        free = shutil.disk_usage(up.workdir).free
        assert abs(good["free_disk_bytes"] - free) < 1 << 30
        assert good["apple_silicon"] is (platform.system() == "Darwin" and platform.machine() == "arm64")
        assert bad["usable"] is False and "host down (127.0.0.1:" in bad["error"]

        r = phasef("hosts", "check", "up", cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "up (127.0.0.1:" in r.stdout and ": ok" in r.stdout and "python    " in r.stdout
        assert "down" not in r.stdout

        r = phasef("hosts", "check", "nope", cwd=tmp_path)
        assert r.returncode == 2 and "no [hosts.nope]; declared: up, down" in r.stderr


def test_config_check_refuses_an_unknown_host_reference(tmp_path: Path) -> None:
    plan = '[hosts.studio]\naddress = "127.0.0.1"\n' + STAGES + 'host = "studo"\n'
    write_plan(tmp_path, plan)
    r = phasef("config", "check", cwd=tmp_path)
    assert r.returncode == 2
    assert "config.toml:8: stages.A.steps.work.host: unknown host 'studo'; declared: studio" in r.stderr


RING_STEP = (
    '[stages.D]\ntitle = "D"\n[stages.D.steps.work]\nkind = "builtin"\n'
    'function = "pipeline.models.tiny:init_step"\nranks = 2\nhosts = ["a", "b"]\n'
)


def test_hosts_check_checks_the_ring_between_the_hosts_a_step_spreads_ranks_over(tmp_path: Path) -> None:
    with loopback_host(tmp_path / "a") as a, loopback_host(tmp_path / "b") as b:
        plan = a.hosts_toml("a", python=sys.executable) + b.hosts_toml("b", python=sys.executable) + RING_STEP
        write_plan(tmp_path, plan)
        r = phasef("hosts", "check", "--json", cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        ring = json.loads(r.stdout)["ring"]
        assert {(p["listener"], p["dialer"]) for p in ring} == {("a", "b"), ("b", "a")}
        assert all(p["ok"] and p["address"] == "127.0.0.1" and 1024 <= p["port"] < 65536 for p in ring), ring

        r = phasef("hosts", "check", cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "ring: b -> a (127.0.0.1:" in r.stdout and "ring: a -> b (127.0.0.1:" in r.stdout

        # one host only, no pair to check
        r = phasef("hosts", "check", "a", "--json", cwd=tmp_path)
        assert r.returncode == 0 and json.loads(r.stdout)["ring"] == []

        b.stop()
        r = phasef("hosts", "check", "--json", cwd=tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        ring = {(p["listener"], p["dialer"]): p for p in json.loads(r.stdout)["ring"]}
        assert ring[("b", "a")]["ok"] is False and "not checked: host b (127.0.0.1:" in ring[("b", "a")]["error"]
        assert ring[("a", "b")]["ok"] is False and "not checked: host b (127.0.0.1:" in ring[("a", "b")]["error"]


def test_hosts_check_ring_flag_checks_every_pair(tmp_path: Path) -> None:
    with loopback_host(tmp_path / "a") as a, loopback_host(tmp_path / "b") as b:
        write_plan(
            tmp_path, a.hosts_toml("a", python=sys.executable) + b.hosts_toml("b", python=sys.executable) + STAGES
        )
        r = phasef("hosts", "check", "--json", cwd=tmp_path)
        assert r.returncode == 0 and json.loads(r.stdout)["ring"] == []
        r = phasef("hosts", "check", "--ring", "--json", cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert sorted((p["listener"], p["dialer"], p["ok"]) for p in json.loads(r.stdout)["ring"]) == [
            ("a", "b", True),
            ("b", "a", True),
        ]
