"""The server's host key: ed25519, generated on first start, kept private (0600), reused so clients can pin it."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import asyncssh

KEY_TYPE = "ssh-ed25519"


class HostKeyError(RuntimeError):
    pass


@dataclass(frozen=True)
class HostKey:
    key: asyncssh.SSHKey
    path: Path
    created: bool

    @property
    def fingerprint(self) -> str:
        return str(self.key.get_fingerprint("sha256"))


def default_host_key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "phasef" / "ssh_host_ed25519_key"


def load_or_create_host_key(path: Path) -> HostKey:
    """Read the key at ``path``, or create it (and ``path.pub``) when absent; refuse a key others can read."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return HostKey(_create(path), path, created=True)
    if info.st_mode & 0o077:
        raise HostKeyError(
            f"{path}: host key is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            "run chmod 600 on it"
        )
    try:
        return HostKey(asyncssh.read_private_key(path), path, created=False)
    except (OSError, asyncssh.KeyImportError, ValueError) as exc:
        raise HostKeyError(f"{path}: cannot read the host key: {exc}") from None


def _create(path: Path) -> asyncssh.SSHKey:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = asyncssh.generate_private_key(KEY_TYPE, comment="phasef host key")
    # O_EXCL: two servers starting at once must not overwrite each other's key
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.export_private_key("openssh"))
    Path(f"{path}.pub").write_bytes(key.export_public_key("openssh"))
    return key
