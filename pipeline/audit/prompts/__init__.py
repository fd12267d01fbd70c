"""Loading and filling the auditors' prompt templates (``pipeline/audit/prompts/*.md``).

The templates are files so that the wording can be reviewed and changed without touching code; they use
``string.Template`` placeholders (``$name``) because the prompts are full of JSON braces.
"""

from __future__ import annotations

from importlib import resources
from string import Template

PROMPTS_PACKAGE = __name__

PLACEHOLDERS: dict[str, frozenset[str]] = {
    "system": frozenset({"part_names"}),
    "primary": frozenset({"stage", "packet_sha256", "discussion", "packet"}),
    "discussion": frozenset({"previous_round", "recursive_name", "recursive_verdict"}),
    "recursive": frozenset({"stage", "round", "primary_name", "primary_verdict", "packet_sha256", "packet"}),
}
"""The values each template is filled with; a template asking for anything else is a bug the tests catch."""


def template_text(name: str) -> str:
    if name not in PLACEHOLDERS:
        raise KeyError(f"no prompt template {name!r}; known: {', '.join(PLACEHOLDERS)}")
    return resources.files(PROMPTS_PACKAGE).joinpath(f"{name}.md").read_text(encoding="utf-8")


def render(name: str, **values: object) -> str:
    """Fill template ``name``; every placeholder must be given (``KeyError`` otherwise)."""
    return Template(template_text(name)).substitute({k: str(v) for k, v in values.items()})
