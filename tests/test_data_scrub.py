"""The secret scrub of training data: each kind of secret the issue names, found and redacted, and counted."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from pipeline.data import scrub
from pipeline.data.scrub import SECRET_KINDS, scrub_text

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
RSA_BLOCK = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "-----END RSA PRIVATE KEY-----"
)
OPENSSH_BLOCK = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----"
)

CASES = [
    # (kind, text around the secret, the secret, what must remain)
    ("jwt", f"Cookie: session={JWT}; Path=/", JWT, "Cookie: session=[REDACTED:jwt]; Path=/"),
    ("huggingface_token", "export HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "hf_abcdefghijklmnop", None),
    ("stripe_key", "stripe.api_key = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'", "sk_live_4eC39", None),
    ("openai_key", "OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH", "sk-abcdefghijklmnop", None),
    (
        "openai_key",
        "key: sk-proj-abcdefghijklmnopqrstuvwxyzT3BlbkFJabcdefghijklmnopqrstuv",
        "T3BlbkFJ",
        "key: [REDACTED:openai_key]",
    ),
    ("aws_access_key", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", None),
    (
        "aws_secret_key",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI",
        "aws_secret_access_key = [REDACTED:aws_secret_key]",
    ),
    (
        "pem_private_key",
        f"cat id_rsa\n{RSA_BLOCK}\n$ ",
        "MIIBOgIBAAJBAKj34",
        "cat id_rsa\n[REDACTED:pem_private_key]\n$ ",
    ),
    ("pem_private_key", OPENSSH_BLOCK, "b3BlbnNzaC1rZXkt", "[REDACTED:pem_private_key]"),
    ("password", "mysql -h db password=hunter2secret", "hunter2secret", "mysql -h db password=[REDACTED:password]"),
    (
        "password",
        "GET /login?user=bob&password=s3cret!&next=/",
        "s3cret!",
        "GET /login?user=bob&password=[REDACTED:password]&next=/",
    ),
    ("password", 'db_password = "s3cr3t-Pa55"', "s3cr3t-Pa55", None),
    ("basic_auth", "git clone https://admin:pa55word@git.internal/x.git", "pa55word", None),
]


@pytest.mark.parametrize(("kind", "text", "secret", "expected"), CASES)
def test_each_kind_of_secret_is_redacted_and_counted(kind: str, text: str, secret: str, expected: str | None) -> None:
    counts: Counter[str] = Counter()
    out = scrub_text(text, counts)
    assert secret not in out, out
    assert f"[REDACTED:{kind}]" in out, out
    assert counts[kind] >= 1 and kind in SECRET_KINDS
    if expected is not None:
        assert out == expected


def test_a_maintained_detector_finds_what_the_regexes_alone_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    """JWTs, quoted keyword secrets and basic-auth URLs come from detect-secrets: without it they stay."""
    text = f'a {JWT} b\ndb_password = "s3cr3t-Pa55"\nhttps://admin:pa55word@localhost:8080/x'
    with_detector = scrub_text(text, Counter())
    monkeypatch.setattr(scrub, "_detector_hits", lambda line: [])
    without = scrub_text(text, Counter())
    for secret in (JWT[:40], "s3cr3t-Pa55", "pa55word"):
        assert secret not in with_detector and secret in without


def test_code_and_prose_about_passwords_are_left_alone() -> None:
    text = (
        'password = os.environ["DB_PASSWORD"]\npassword = getpass()\npassword = None\n'
        "the password field is required\ndef check(pass_count: int) -> bool:\nsha256 "
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    )
    counts: Counter[str] = Counter()
    assert scrub_text(text, counts) == text and not counts


def test_ordinary_trace_lines_are_fast() -> None:
    """Most lines never reach the detectors (a pre-filter): 20k ordinary lines in well under two seconds."""
    lines = [f"Observation: tests/test_io.py::test_{i} failed: assert {i} == {i + 1}" for i in range(20_000)]
    started = time.perf_counter()
    scrub_text("\n".join(lines), Counter())
    assert time.perf_counter() - started < 2.0
