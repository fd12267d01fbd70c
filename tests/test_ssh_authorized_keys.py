"""authorized_keys: operator name and role from each entry, fail-closed roles, options honoured or refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
import pytest

from phasef_tui.ssh.authorized_keys import (
    ROLE_APPROVER,
    ROLE_VIEWER,
    address_matches,
    read_authorized_keys,
)
from phasef_tui.ssh.host_key import HostKeyError, load_or_create_host_key


def _key(comment: str) -> tuple[asyncssh.SSHKey, str]:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    return key, key.export_public_key("openssh").decode().strip()


def _file(tmp_path: Path, lines: list[str], mode: int = 0o600) -> Path:
    path = tmp_path / "authorized_keys"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(mode)
    return path


def test_name_from_comment_role_from_environment_and_viewer_by_default(tmp_path: Path) -> None:
    alice, alice_pub = _key("alice@laptop")
    bob, bob_pub = _key("bob")
    carol, carol_pub = _key("ignored comment")
    path = _file(
        tmp_path,
        [
            "# operators",
            f'environment="PHASEF_ROLE=approver" {alice_pub}',
            bob_pub,
            f'environment="PHASEF_OPERATOR=carol",environment="PHASEF_ROLE=Approver" {carol_pub}',
        ],
    )
    keys = read_authorized_keys(path)
    assert keys.issues == []
    assert keys.summary() == "3 keys (2 approvers, 1 viewers)"
    op, why = keys.find(alice, "127.0.0.1")
    assert op is not None and why == ""
    assert (op.name, op.role, op.may_decide) == ("alice@laptop", ROLE_APPROVER, True)
    assert op.fingerprint == alice.get_fingerprint("sha256") and op.fingerprint.startswith("SHA256:")
    assert op.source == f"{path}:2"
    op, _ = keys.find(bob, "127.0.0.1")
    assert op is not None and (op.name, op.role, op.may_decide) == ("bob", ROLE_VIEWER, False)
    op, _ = keys.find(carol, "127.0.0.1")
    assert op is not None and (op.name, op.role) == ("carol", ROLE_APPROVER)


def test_unknown_key_is_not_found(tmp_path: Path) -> None:
    _alice, alice_pub = _key("alice")
    stranger, _ = _key("mallory")
    keys = read_authorized_keys(_file(tmp_path, [alice_pub]))
    op, why = keys.find(stranger, "127.0.0.1")
    assert op is None and "not in" in why


def test_misspelt_role_is_a_viewer_and_reported_with_file_and_line(tmp_path: Path) -> None:
    key, pub = _key("dave")
    path = _file(tmp_path, [f'environment="PHASEF_ROLE=aprover" {pub}'])
    keys = read_authorized_keys(path)
    op, _ = keys.find(key, "127.0.0.1")
    assert op is not None and op.role == ROLE_VIEWER
    assert keys.issues == [
        f"{path}:1: PHASEF_ROLE: unknown role 'aprover', treated as viewer (roles: approver, viewer)"
    ]


def test_bad_lines_are_reported_and_the_rest_still_count(tmp_path: Path) -> None:
    good, good_pub = _key("erin")
    _k1, nameless_pub = _key("")
    _k2, forced_pub = _key("frank")
    _k3, odd_pub = _key("gina")
    path = _file(
        tmp_path,
        [
            "ssh-ed25519 AAAAnotbase64 broken",
            nameless_pub,
            f'command="/bin/sh" {forced_pub}',
            f"frobnicate {odd_pub}",
            f'environment="PHASEF_ROLE=approver {good_pub}',
            f'environment="LD_PRELOAD=x.so",environment="PHASEF_ROLE=approver" {good_pub}',
        ],
    )
    keys = read_authorized_keys(path)
    issues = "\n".join(keys.issues)
    assert f"{path}:1: key: cannot read the ssh-ed25519 key" in issues
    assert f"{path}:2: comment: no operator name" in issues
    assert f"{path}:3: command: phasef cannot honour this option" in issues
    assert f"{path}:4: frobnicate: unknown option" in issues
    assert f"{path}:5: options: unbalanced quote" in issues
    assert f"{path}:6: environment: LD_PRELOAD is ignored" in issues
    assert len(keys.entries) == 1
    op, _ = keys.find(good, "127.0.0.1")
    assert op is not None and op.name == "erin" and op.role == ROLE_APPROVER


def test_names_with_control_characters_are_refused(tmp_path: Path) -> None:
    _key1, pub = _key("x")
    path = _file(tmp_path, [f'environment="PHASEF_OPERATOR=\x1b[31mroot" {pub}'])
    keys = read_authorized_keys(path)
    assert keys.entries == []
    assert "PHASEF_OPERATOR: operator name" in keys.issues[0]


def test_from_and_expiry_time_are_enforced(tmp_path: Path) -> None:
    key, pub = _key("hank")
    later = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y%m%d")
    path = _file(tmp_path, [f'from="127.0.0.0/8,!127.0.0.2",expiry-time="{later}Z" {pub}'])
    keys = read_authorized_keys(path)
    assert keys.find(key, "127.0.0.1")[0] is not None
    assert keys.find(key, "::ffff:127.0.0.1")[0] is not None
    op, why = keys.find(key, "127.0.0.2")
    assert op is None and "not allowed by from=" in why
    assert keys.find(key, "10.1.2.3")[0] is None
    op, why = keys.find(key, "127.0.0.1", now=datetime.now(UTC) + timedelta(days=3))
    assert op is None and "expired" in why
    bad = read_authorized_keys(_file(tmp_path, [f'expiry-time="tomorrow" {pub}']))
    assert "expiry-time: expected YYYYMMDD" in bad.issues[0]


def test_address_patterns() -> None:
    assert address_matches("127.0.0.1", "127.0.0.1")
    assert address_matches("127.*", "127.9.9.9")
    assert address_matches("::1,127.0.0.1", "::1")
    assert not address_matches("!127.0.0.1,*", "127.0.0.1")
    assert not address_matches("!10.0.0.0/8", "127.0.0.1")  # only exclusions: nothing matches
    assert not address_matches("127.0.0.1", "not-an-address")


def test_no_pty_and_restrict_forbid_a_terminal_unless_pty_is_given(tmp_path: Path) -> None:
    k1, p1 = _key("ivan")
    k2, p2 = _key("judy")
    k3, p3 = _key("kim")
    keys = read_authorized_keys(_file(tmp_path, [f"no-pty {p1}", f"restrict {p2}", f"restrict,pty {p3}"]))
    assert [keys.find(k, "127.0.0.1")[0].terminal_allowed for k in (k1, k2, k3)] == [False, False, True]  # type: ignore[union-attr]


def test_first_matching_line_wins_as_in_openssh(tmp_path: Path) -> None:
    key, pub = _key("lee")
    keys = read_authorized_keys(_file(tmp_path, [pub, f'environment="PHASEF_ROLE=approver" {pub}']))
    op, _ = keys.find(key, "127.0.0.1")
    assert op is not None and op.role == ROLE_VIEWER


def test_a_file_others_may_write_or_a_missing_file_admits_nobody(tmp_path: Path) -> None:
    key, pub = _key("mia")
    keys = read_authorized_keys(_file(tmp_path, [pub], mode=0o666))
    assert keys.entries == [] and "writable by group or others" in keys.issues[0]
    assert keys.find(key, "127.0.0.1")[0] is None
    missing = read_authorized_keys(tmp_path / "nope")
    assert missing.entries == [] and "cannot read" in missing.issues[0]


def test_host_key_is_generated_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "ssh_host_ed25519_key"
    first = load_or_create_host_key(path)
    assert first.created and path.stat().st_mode & 0o777 == 0o600
    assert first.key.get_algorithm() == "ssh-ed25519"
    assert Path(f"{path}.pub").read_text().startswith("ssh-ed25519 ")
    again = load_or_create_host_key(path)
    assert not again.created and again.fingerprint == first.fingerprint
    path.chmod(0o644)
    with pytest.raises(HostKeyError, match="chmod 600"):
        load_or_create_host_key(path)
