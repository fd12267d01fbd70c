"""Property tests of ``authorized_keys`` parsing: any line is an entry or an issue naming file:line and field;
nothing raises, and ``from=`` matching takes any pattern and address."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
from hypothesis import given
from hypothesis import strategies as st

from phasef_tui.ssh.authorized_keys import address_matches, read_authorized_keys

KEY = asyncssh.generate_private_key("ssh-ed25519")
PUB = KEY.export_public_key("openssh").decode().split()
OPTION_NAMES = ["environment", "from", "expiry-time", "restrict", "no-pty", "pty", "command", "no-agent-forwarding",
                "principals", "tunnel", "Environment", "FROM", "x"]  # fmt: skip
VALUE_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=30)
option_values = st.one_of(
    VALUE_TEXT,
    st.sampled_from(["PHASEF_ROLE=approver", "PHASEF_OPERATOR=ann", "PHASEF_ROLE=", "=x", "127.0.0.1,!10.*"]),
    st.sampled_from(["20300101", "20300101Z", "00010101", "99991231235959Z", "1", "²²²²²²²²", "19700101"]),
    st.sampled_from(["10.0.0.0/8", "::1/128", "::ffff:1.2.3.4", "1.2.3.4/99", "*", "!*", "fe80::1%eth0"]),
)


@st.composite
def options(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(OPTION_NAMES))
        if draw(st.booleans()):
            value = draw(option_values)
            quoted = draw(st.booleans())
            parts.append(f'{name}="{value}"' if quoted else f"{name}={value}")
        else:
            parts.append(name)
    return ",".join(parts)


@st.composite
def key_lines(draw: st.DrawFn) -> str:
    key_type = draw(st.sampled_from([PUB[0], "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "sk-x", "nope"]))
    blob = draw(st.sampled_from([PUB[1], PUB[1][:-4], "AAAA", "!!!", ""]))
    comment = draw(st.sampled_from(["", "ann", "bob@host", "a" * 70, "bad\tname", "ünï"]))
    opts = draw(options())
    return " ".join(p for p in (opts, key_type, blob, comment) if p)


lines = st.lists(st.one_of(key_lines(), VALUE_TEXT, st.sampled_from(["", "#", "# comment", "   "])), max_size=12)


@given(lines)
def test_any_authorized_keys_file_gives_entries_and_issues(body: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="ak-prop-") as folder:
        path = Path(folder) / "authorized_keys"
        path.write_text("\n".join(body) + "\n", encoding="utf-8")
        path.chmod(0o600)
        result = read_authorized_keys(path)
        numbered = [n for n, raw in enumerate("\n".join(body).splitlines(), 1) if raw.strip()]
        numbered = [n for n in numbered if not "\n".join(body).splitlines()[n - 1].strip().startswith("#")]
        sources = {e.operator.source for e in result.entries}
        issue_lines = {issue.split(": ", 1)[0] for issue in result.issues}
        for n in numbered:  # every entry line is either admitted or named in an issue (file:line)
            assert f"{path}:{n}" in sources or f"{path}:{n}" in issue_lines, (body, result.issues)
        now = datetime.now(UTC)
        for entry in result.entries:
            assert entry.operator.role in ("approver", "viewer")
            entry.refusal("127.0.0.1", now)
            entry.refusal("::1", now)
            result.find(entry.key, "10.1.2.3", now)


@given(VALUE_TEXT, st.one_of(VALUE_TEXT, st.ip_addresses().map(str)))
def test_address_matching_takes_any_pattern_and_address(patterns: str, addr: str) -> None:
    assert isinstance(address_matches(patterns, addr), bool)
