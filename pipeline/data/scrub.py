"""Secret and PII scrubbing for training rows.

Traces hold whatever the environment printed, so a key pasted into a file, an ``Authorization`` header or a
private key can end up in a tick's context. A model trained on it could repeat it. Every string of a row is
scrubbed before the row is kept, deduplicated or written anywhere (rejects included); each match is replaced with
``[REDACTED:<kind>]`` and counted by kind.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

REDACTED = "[REDACTED:{kind}]"

# Order matters: a PEM block can contain anything, and "Bearer sk-..." is one bearer token, not a key plus text.
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "pem_private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)", re.S
        ),
    ),
    ("bearer_token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{12,}=*")),
    ("openai_key", re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})")),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
)
SECRET_KINDS: tuple[str, ...] = tuple(kind for kind, _ in SECRET_PATTERNS)


def scrub_text(text: str, counts: Counter[str]) -> str:
    """Replace every secret or PII shape in ``text``; add what was found to ``counts``."""
    for kind, pattern in SECRET_PATTERNS:
        text, n = pattern.subn(REDACTED.format(kind=kind), text)
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
