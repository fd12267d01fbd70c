"""Acceptance: the real OpenSSH client, the real ``phasef serve`` and the real TUI on a running supervisor.

An approver signs a gate through the TUI's keys and the decision (name and key fingerprint) is in the journal and in
``phasef status --json``; a viewer's attempt is refused; resizes re-render; a lone Escape closes a dialog; colours
follow the client's TERM/COLORTERM; stopping the server detaches everyone and the run goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from phasef_tui.ssh.server import SHUTDOWN_MESSAGE
from phasef_tui.ssh.session import NO_TERMINAL
from tests.spine_helpers import ONE_GATE_PROMPT, has_event, journal_events, wait_for
from tests.ssh_helpers import Served, capture_raw, fingerprint, make_key, run_ssh, ssh_argv
from tests.tmux_helpers import Tmux

pytestmark = pytest.mark.skipif(
    shutil.which("ssh") is None or shutil.which("tmux") is None, reason="needs the OpenSSH client and tmux"
)

PROMPT = ONE_GATE_PROMPT


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def test_viewer_is_refused_and_the_approver_signs_the_gate_over_ssh(served: Served, tmux: Tmux) -> None:
    tmux.start("viewer", ssh_argv(served.port, served.victor, "-tt"), 120, 35)
    tmux.wait_for("viewer", PROMPT)
    tmux.send("viewer", "4")
    tmux.wait_for("viewer", "gate B.release")
    tmux.send("viewer", "a")
    screen = tmux.wait_for_any("viewer", ["APPROVE (GO)", "not signed"])
    if "APPROVE (GO)" in screen:  # the dialogs open for anyone; the signature is what gets refused
        tmux.send("viewer", "viewer tries", literal=True)
        tmux.send("viewer", "Enter")
        tmux.wait_for("viewer", "unmet pass criteria")  # the plan has no comparison nor audit: an override
        tmux.send("viewer", "override", literal=True)
        tmux.send("viewer", "Enter")
    screen = tmux.wait_for("viewer", "not signed")
    assert "only approvers" in _unwrapped(screen)
    assert not has_event(served.session, "gate_decided")
    assert served.status()["gates"][0]["state"] == "waiting"

    tmux.start("approver", ssh_argv(served.port, served.alice, "-tt"), 120, 35)
    tmux.wait_for("approver", PROMPT)
    tmux.send("approver", "4")
    tmux.wait_for("approver", "gate B.release")
    tmux.send("approver", "a")
    tmux.wait_for("approver", "APPROVE (GO) gate B.release as alice")
    tmux.send("approver", "checked over ssh", literal=True)
    tmux.send("approver", "Enter")
    tmux.wait_for("approver", "GO at the final gate B.release over 3 unmet pass criteria")
    tmux.send("approver", "override", literal=True)
    tmux.send("approver", "Enter")
    wait_for(lambda: has_event(served.session, "gate_decided", "B.release"), 30, "the decision")
    decided = [e for e in journal_events(served.session) if e["type"] == "gate_decided"]
    assert decided[0]["payload"]["operator"] == "alice"
    assert decided[0]["payload"]["key_fingerprint"] == fingerprint(served.alice)
    assert decided[0]["payload"]["reason"] == "checked over ssh"
    out, _ = served.supervisor.communicate(timeout=60)
    assert served.supervisor.returncode == 4, out  # GO-OVERRIDE
    gate = served.status()["gates"][0]
    assert (gate["state"], gate["decision"], gate["operator"]) == ("decided", "go", "alice")
    logins = {e["operator"]: e for e in map(json.loads, served.log.read_text().splitlines()) if e["event"] == "login"}
    assert logins["alice"]["role"] == "approver" and logins["victor"]["role"] == "viewer"


def test_resize_escape_colours_refusals_and_shutdown_with_the_real_tui(served: Served, tmux: Tmux) -> None:
    host_key = served.folder / "host_key"
    assert host_key.stat().st_mode & 0o777 == 0o600
    assert f"generated new host key {fingerprint(host_key)} (ed25519)" in "\n".join(served.banner)
    assert "authorized keys: " in "\n".join(served.banner) and "2 keys (1 approvers, 1 viewers)" in served.banner[1]

    stranger, _ = make_key(served.folder, "mallory")
    r = run_ssh(ssh_argv(served.port, stranger, "-tt"))
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
    password = ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"]
    r = run_ssh(ssh_argv(served.port, served.alice, *password, "-tt"))
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
    r = run_ssh(ssh_argv(served.port, served.alice, "-T"))
    assert (r.returncode, r.stderr) == (1, NO_TERMINAL + "\n")

    tmux.start("a", ssh_argv(served.port, served.alice, "-tt"), 100, 30)
    tmux.wait_for("a", PROMPT)
    wait_for(lambda: "Quit" in _row(tmux.screen("a"), 29), 20, "the key bar on the last row")
    assert max(len(line) for line in tmux.screen("a").splitlines()) <= 100
    tmux.resize("a", 150, 45)
    wait_for(lambda: "Quit" in _row(tmux.screen("a"), 44), 20, "the key bar to move to the new last row")
    assert max(len(line.rstrip()) for line in tmux.screen("a").splitlines()) > 100

    tmux.send("a", "4")
    tmux.wait_for("a", "gate B.release")
    tmux.send("a", "a")
    tmux.wait_for("a", "APPROVE (GO)")
    tmux.send("a", "Escape")  # alone: the dialog closes, nothing is signed
    wait_for(lambda: "APPROVE (GO)" not in tmux.screen("a"), 10, "the dialog to close on Escape")
    assert not has_event(served.session, "gate_decided")

    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    truecolor = capture_raw(
        ssh_argv(served.port, served.alice, "-tt", "-o", "SetEnv=COLORTERM=truecolor"),
        {**base, "TERM": "xterm-256color"},
        PROMPT.encode(),
    )
    indexed = capture_raw(
        ssh_argv(served.port, served.alice, "-tt"), {**base, "TERM": "xterm-256color"}, PROMPT.encode()
    )
    assert b"\x1b[38;2;" in truecolor or b";38;2;" in truecolor
    assert b"38;5;" in indexed and b"38;2;" not in indexed

    served.server.send_signal(signal.SIGTERM)
    tmux.wait_for("a", SHUTDOWN_MESSAGE)
    assert tmux.wait_exit("a") == 0
    assert served.server.wait(30) == 0
    status = served.status()
    assert served.supervisor.poll() is None and status["source"] == "supervisor"
    assert status["gates"][0]["state"] == "waiting"  # the run goes on without the server
    ends = [e for e in map(json.loads, served.log.read_text().splitlines()) if e["event"] == "session_end"]
    assert any(e["reason"] == "server shutdown" and e["size"] == "150x45" for e in ends)


def _row(screen: str, index: int) -> str:
    rows = screen.splitlines()
    return rows[index] if index < len(rows) else ""


def _unwrapped(screen: str) -> str:
    """The screen's words with line breaks and box drawing removed (a toast wraps its message)."""
    words = [w for line in screen.splitlines() for w in line.split() if w.strip("▎▊▌▐│")]
    return " ".join(words)
