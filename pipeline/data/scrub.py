"""Secret and PII scrubbing for training rows.

Traces hold whatever the environment printed, so a key pasted into a file, an ``Authorization`` header or a
private key can end up in a tick's context. A model trained on it could repeat it. Every string of a row is
scrubbed before the row is kept, deduplicated or written anywhere (rejects included); each match is replaced with
``[REDACTED:<kind>]`` and counted by kind.

Two layers, in this order:

1. A private-key block (the whole PEM block, which can hold anything) and ``Bearer`` tokens.
2. The detectors of ``detect-secrets`` (a maintained detector set: JWTs, AWS keys, Stripe and OpenAI keys, GitHub,
   Slack, npm, PyPI and other vendor tokens, ``password = "..."`` keywords, basic-auth URLs), run on the lines that
   could hold one (``TRIGGERS``: ordinary lines never reach its ~20 regexes). A hit is widened to the whole
   token it starts (detect-secrets may report a prefix) and redacted.
3. Shapes it does not know or reports only in some syntaxes: ``sk-`` keys of any form, Hugging Face ``hf_`` tokens,
   AWS ids and ``aws_secret_access_key`` values, ``password=value`` pairs without quotes, e-mail addresses.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

REDACTED = "[REDACTED:{kind}]"

PEM_BLOCK = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)", re.S
)
BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{12,}=*")

# Shapes checked after detect-secrets (order matters: a more specific shape first).
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("stripe_key", re.compile(r"\b[rs]k_live_[A-Za-z0-9]{16,}")),
    ("openai_key", re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")),
    ("huggingface_token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "aws_secret_key",
        re.compile(r"(?i)(?<=aws_secret_access_key)(\s*[=:]\s*[\"']?)[A-Za-z0-9/+]{40}\b"),
    ),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})")),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    (
        "password",
        re.compile(
            r"(?i)(?<![A-Za-z0-9])((?:[a-z_]*_)?(?:password|passwd|pwd|pass)(?:\s*=\s*|:))"
            r"(?!(?:none|null|true|false)\b)[^\s\"'&;,()\[\]{}<>]{3,}(?![(\[{.\w])"
        ),
    ),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
)
KEEP_PREFIX = frozenset({"aws_secret_key", "password"})
"""Kinds whose first group (the name and its ``=``) is kept: ``password=[REDACTED:password]``."""

DETECTOR_KINDS = {
    "JSON Web Token": "jwt",
    "AWS Access Key": "aws_access_key",
    "Private Key": "pem_private_key",
    "Secret Keyword": "password",
    "OpenAI Token": "openai_key",
    "Stripe Access Key": "stripe_key",
    "GitHub Token": "github_token",
    "GitLab Token": "gitlab_token",
    "Slack Token": "slack_token",
    "Basic Auth Credentials": "basic_auth",
    "NPM tokens": "npm_token",
    "PyPI Token": "pypi_token",
    "Artifactory Credentials": "artifactory_token",
    "Azure Storage Account access key": "azure_storage_key",
    "Discord Bot Token": "discord_token",
    "Mailchimp Access Key": "mailchimp_key",
    "SendGrid API Key": "sendgrid_key",
    "Square OAuth Secret": "square_oauth",
    "Telegram Bot Token": "telegram_token",
    "Twilio API Key": "twilio_key",
}
DETECTORS = (
    "AWSKeyDetector",
    "ArtifactoryDetector",
    "AzureStorageKeyDetector",
    "BasicAuthDetector",
    "DiscordBotTokenDetector",
    "GitHubTokenDetector",
    "GitLabTokenDetector",
    "JwtTokenDetector",
    "KeywordDetector",
    "MailchimpDetector",
    "NpmDetector",
    "OpenAIDetector",
    "PrivateKeyDetector",
    "PypiTokenDetector",
    "SendGridDetector",
    "SlackDetector",
    "SquareOAuthDetector",
    "StripeDetector",
    "TelegramBotTokenDetector",
    "TwilioKeyDetector",
)
"""detect-secrets plugins used (the high-entropy ones are left out: they would redact every hash in a trace)."""

TRIGGERS = (
    "eyj", "akia", "asia", "private key", "_live_", "sk-", "gh", "glpat", "xox", "npm_", "pypi-", "sg.", "sq0",
    "accountkey", "pass", "pwd", "secret", "token", "key", "credential", "auth", "://",
)  # fmt: skip
"""Lower-case pieces of text that every detector's match contains, or that name what it holds: a line with none of
them never reaches the detectors (most trace lines), which keeps the scrub fast."""
PATTERN_TRIGGERS = {
    "stripe_key": ("_live_",),
    "openai_key": ("sk-",),
    "huggingface_token": ("hf_",),
    "aws_access_key": ("akia", "asia"),
    "aws_secret_key": ("aws_secret_access_key",),
    "github_token": ("gh", "github_pat"),
    "slack_token": ("xox",),
    "google_api_key": ("aiza",),
    "password": ("pass", "pwd"),
    "email": ("@",),
}
"""The shapes' regexes run only on text that holds one of these (lower-case) pieces."""


def _may_hold(low: str, triggers: tuple[str, ...]) -> bool:
    return any(t in low for t in triggers)


TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.+/=~]*")

SECRET_KINDS: tuple[str, ...] = tuple(
    dict.fromkeys(["pem_private_key", "bearer_token", *DETECTOR_KINDS.values(), *(k for k, _ in SECRET_PATTERNS)])
)

_detect_lock = threading.Lock()


def _detector_hits(line: str) -> list[tuple[str, str]]:
    """(kind, secret) pairs that detect-secrets finds in one line."""
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import transient_settings

    config = {"plugins_used": [{"name": name} for name in DETECTORS]}  # with its default false-positive filters
    with _detect_lock, transient_settings(config):  # its settings are process-global
        found = [(s.type, s.secret_value) for s in scan_line(line)]
    hits = []
    for kind, secret in found:
        if secret:
            hits.append((DETECTOR_KINDS.get(kind, re.sub(r"\W+", "_", kind.lower()).strip("_")), secret))
    hits.sort(key=lambda hit: hit[0] == "password")  # a vendor's key named as such, not as "a secret keyword"
    return hits


def _redact_detected(text: str, counts: Counter[str]) -> str:
    if not _may_hold(text.lower(), TRIGGERS):
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not _may_hold(line.lower(), TRIGGERS):
            continue
        for kind, secret in _detector_hits(line):
            start = line.find(secret)
            while start >= 0:
                end = start + len(secret)
                end += TOKEN_CHARS.match(line, end).end() - end  # type: ignore[union-attr]
                line = line[:start] + REDACTED.format(kind=kind) + line[end:]
                counts[kind] += 1
                start = line.find(secret, start + 1)
        lines[i] = line
    return "\n".join(lines)


def scrub_text(text: str, counts: Counter[str]) -> str:
    """Replace every secret or PII shape in ``text``; add what was found to ``counts``."""
    low = text.lower()
    for kind, pattern, trigger in (("pem_private_key", PEM_BLOCK, "private key"), ("bearer_token", BEARER, "bearer")):
        if trigger not in low:
            continue
        text, n = pattern.subn(REDACTED.format(kind=kind), text)
        if n:
            counts[kind] += n
    text = _redact_detected(text, counts)
    low = text.lower()
    for kind, pattern in SECRET_PATTERNS:
        if not _may_hold(low, PATTERN_TRIGGERS[kind]):
            continue
        replacement = (r"\1" if kind in KEEP_PREFIX else "") + REDACTED.format(kind=kind)
        text, n = pattern.subn(replacement, text)
        if n:
            counts[kind] += n
    return text


def scrub_value(value: Any, counts: Counter[str]) -> Any:
    """Scrub every string inside a JSON-like value (dict keys are left alone: they are field names)."""
    if isinstance(value, str):
        return scrub_text(value, counts)
    if isinstance(value, dict):
        return {k: scrub_value(v, counts) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v, counts) for v in value]
    return value
