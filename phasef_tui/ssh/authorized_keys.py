"""Who may log in over SSH, and as whom: an OpenSSH ``authorized_keys`` file read anew at every login.

Each line is ``[options] key-type base64 [comment]``. The operator's name is ``environment="PHASEF_OPERATOR=name"``
when present, else the comment; the role is ``environment="PHASEF_ROLE=approver"`` or ``viewer``. A key without a
role is a viewer and a misspelt role is a viewer too (fail closed): only an explicit ``approver`` may sign gates or
cancel (the supervisor refuses both from any other role).

Options phasef honours: ``environment`` (the two names above), ``from`` (address patterns and CIDR blocks, ``!`` to
exclude), ``expiry-time``, ``no-pty``/``restrict``/``pty``. The forwarding and rc options are accepted and have no
effect, since phasef refuses forwarding for every key. Options that would give a key a meaning phasef cannot honour
(``command``, ``principals``, ``cert-authority``, ``permitopen``, ``permitlisten``, ``tunnel``...) make that line an
error, so the key is refused rather than trusted beyond what its owner wrote. A bad line is reported with the file,
line and field, and the other lines still count.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path

import asyncssh

ROLE_APPROVER = "approver"
ROLE_VIEWER = "viewer"
ROLES = (ROLE_APPROVER, ROLE_VIEWER)
ROLE_VAR = "PHASEF_ROLE"
NAME_VAR = "PHASEF_OPERATOR"
MAX_FILE_BYTES = 1 << 20
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+ -]{0,63}")
KEY_TYPE_PATTERN = re.compile(r"(ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+")
IGNORED_FLAGS = frozenset(
    {
        "no-port-forwarding",
        "no-agent-forwarding",
        "no-x11-forwarding",
        "no-user-rc",
        "port-forwarding",
        "agent-forwarding",
        "x11-forwarding",
        "user-rc",
    }
)
UNSUPPORTED = frozenset(
    {
        "command",
        "principals",
        "cert-authority",
        "permitopen",
        "permitlisten",
        "tunnel",
        "no-touch-required",
        "verify-required",
    }
)


@dataclass(frozen=True)
class Operator:
    """The person behind an authenticated key: what every decision they sign records."""

    name: str
    role: str
    fingerprint: str
    source: str  # FILE:LINE of the authorized_keys entry that admitted them
    terminal_allowed: bool = True

    @property
    def may_decide(self) -> bool:
        return self.role == ROLE_APPROVER


@dataclass(frozen=True)
class AuthorizedKey:
    key: asyncssh.SSHKey
    operator: Operator
    from_patterns: tuple[str, ...] = ()
    expires: datetime | None = None

    def refusal(self, peer_addr: str, now: datetime) -> str | None:
        """Why this entry does not admit a login from ``peer_addr`` now (None: it does)."""
        if self.expires is not None and now >= self.expires:
            return f"key expired at {self.expires.isoformat()} ({self.operator.source})"
        for patterns in self.from_patterns:
            if not address_matches(patterns, peer_addr):
                return f'address {peer_addr} not allowed by from="{patterns}" ({self.operator.source})'
        return None


@dataclass
class AuthorizedKeys:
    path: Path
    entries: list[AuthorizedKey] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)

    def find(self, key: asyncssh.SSHKey, peer_addr: str, now: datetime | None = None) -> tuple[Operator | None, str]:
        """The operator this key logs in as, or None and the reason (first matching line wins, as in OpenSSH)."""
        now = now or datetime.now(UTC)
        for entry in self.entries:
            if entry.key.public_data == key.public_data:
                why = entry.refusal(peer_addr, now)
                return (None, why) if why else (entry.operator, "")
        return None, f"key not in {self.path}"

    def summary(self) -> str:
        approvers = sum(1 for e in self.entries if e.operator.role == ROLE_APPROVER)
        return f"{len(self.entries)} keys ({approvers} approvers, {len(self.entries) - approvers} viewers)"


class EntryError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def read_authorized_keys(path: Path) -> AuthorizedKeys:
    """Read and check the file; never raises: an unusable file admits nobody and says why in ``issues``."""
    result = AuthorizedKeys(path)
    try:
        info = path.stat()
    except OSError as exc:
        result.issues.append(f"{path}: cannot read: {exc.strerror or exc}")
        return result
    problem = _file_problem(info)
    if problem:
        result.issues.append(f"{path}: {problem}; no key is accepted until this is fixed")
        return result
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        result.issues.append(f"{path}: cannot read: {exc}")
        return result
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        warnings: list[EntryError] = []
        try:
            result.entries.append(parse_entry(line, f"{path}:{lineno}", warnings))
        except EntryError as exc:
            warnings.append(exc)
        result.issues.extend(f"{path}:{lineno}: {w.field}: {w}" for w in warnings)
    return result


def _file_problem(info: os.stat_result) -> str | None:
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size > MAX_FILE_BYTES:
        return f"larger than {MAX_FILE_BYTES} bytes"
    if info.st_mode & 0o022:
        return f"writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); run chmod go-w on it"
    if info.st_uid not in (os.getuid(), 0):
        return f"owned by uid {info.st_uid}, neither this user nor root"
    return None


def parse_entry(line: str, source: str, warnings: list[EntryError] | None = None) -> AuthorizedKey:
    """One authorized_keys line -> an entry; ``EntryError`` names the field that is wrong.

    Problems that leave the key usable but weaker than written (an unknown role, an ignored variable) are appended
    to ``warnings``.
    """
    warnings = warnings if warnings is not None else []
    first = line.split(None, 1)[0]
    options: list[tuple[str, str | None]] = []
    rest = line
    if not KEY_TYPE_PATTERN.fullmatch(first):
        options, rest = split_options(line)
    parts = rest.split(None, 2)
    if len(parts) < 2:
        raise EntryError("key", "expected 'key-type base64-key [comment]'")
    try:
        key = asyncssh.import_public_key(f"{parts[0]} {parts[1]}")
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise EntryError("key", f"cannot read the {parts[0]} key: {exc}") from None
    comment = parts[2].strip() if len(parts) > 2 else ""

    env: dict[str, str] = {}
    from_patterns: list[str] = []
    expires: datetime | None = None
    restricted = no_pty = pty = False
    for name, value in options:
        if name in UNSUPPORTED:
            raise EntryError(name, "phasef cannot honour this option, so the key is refused")
        if name == "environment":
            if value is None or "=" not in value or value.startswith("="):
                raise EntryError(name, 'expected environment="NAME=value"')
            var, val = value.split("=", 1)
            if var in (ROLE_VAR, NAME_VAR):
                env[var] = val.strip()
            else:
                warnings.append(EntryError(name, f"{var} is ignored; phasef reads {ROLE_VAR} and {NAME_VAR}"))
        elif name == "from":
            if not value:
                raise EntryError(name, 'expected from="pattern,..."')
            from_patterns.append(value)
        elif name == "expiry-time":
            expires = parse_expiry(value)
        elif name == "restrict":
            restricted = True
        elif name == "no-pty":
            no_pty = True
        elif name == "pty":
            pty = True
        elif name not in IGNORED_FLAGS:
            raise EntryError(name, "unknown option")

    name = env.get(NAME_VAR) or comment
    if not name:
        raise EntryError("comment", f'no operator name: add a comment or environment="{NAME_VAR}=name"')
    if not NAME_PATTERN.fullmatch(name):
        raise EntryError(
            NAME_VAR if NAME_VAR in env else "comment",
            f"operator name {name!r} must be 1-64 letters, digits, spaces or . _ @ + -",
        )
    role = env.get(ROLE_VAR, ROLE_VIEWER).lower()
    if role not in ROLES:
        warnings.append(
            EntryError(ROLE_VAR, f"unknown role {role!r}, treated as {ROLE_VIEWER} (roles: {', '.join(ROLES)})")
        )
    operator = Operator(
        name=name,
        role=role if role in ROLES else ROLE_VIEWER,
        fingerprint=key.get_fingerprint("sha256"),
        source=source,
        terminal_allowed=not no_pty and (pty or not restricted),
    )
    return AuthorizedKey(key, operator, tuple(from_patterns), expires)


def split_options(line: str) -> tuple[list[tuple[str, str | None]], str]:
    """Split the leading ``opt,opt="quoted, value"`` list from the key; names are case-insensitive."""
    options: list[tuple[str, str | None]] = []
    current = ""
    quoted = escaped = False
    end = len(line)
    for idx, ch in enumerate(line):
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif quoted:
            current += ch
        elif ch in " \t":
            end = idx
            break
        elif ch == ",":
            options.append(_option(current))
            current = ""
        else:
            current += ch
    if quoted:
        raise EntryError("options", "unbalanced quote")
    options.append(_option(current))
    return options, line[end:].strip()


def _option(text: str) -> tuple[str, str | None]:
    if not text:
        raise EntryError("options", "empty option (stray comma?)")
    if "=" in text:
        name, value = text.split("=", 1)
        return name.lower(), value
    return text.lower(), None


def parse_expiry(value: str | None) -> datetime:
    """``YYYYMMDD[HHMM[SS]][Z]``: local time unless it ends with Z (UTC), as OpenSSH reads it."""
    text = (value or "").strip()
    utc = text.endswith(("Z", "z"))
    digits = text[:-1] if utc else text
    formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    try:
        if not digits.isdigit() or len(digits) not in formats:
            raise ValueError
        parsed = datetime.strptime(digits, formats[len(digits)])
    except ValueError:
        raise EntryError("expiry-time", f"expected YYYYMMDD[HHMM[SS]][Z], got {text!r}") from None
    return parsed.replace(tzinfo=UTC) if utc else parsed.astimezone()


def address_matches(patterns: str, addr: str) -> bool:
    """OpenSSH ``from=`` semantics: some pattern matches and no ``!pattern`` does (wildcards or CIDR)."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    text = str(ip)
    matched = False
    for raw in patterns.split(","):
        pattern = raw.strip()
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if "/" in pattern:
            try:
                hit = ip in ipaddress.ip_network(pattern, strict=False)
            except ValueError:
                hit = False
        else:
            hit = fnmatchcase(text, pattern.lower())
        if hit and negated:
            return False
        matched = matched or hit
    return matched
