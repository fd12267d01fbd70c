"""The prompt templates ship as package files, fill without leftovers, and ask for the schema the parser checks."""

from __future__ import annotations

import json
import re
from importlib import resources
from string import Template

import pytest

from pipeline.audit import prompts
from pipeline.audit.verdict import VerdictBlock


def test_every_template_file_is_known_and_every_known_template_exists() -> None:
    files = {p.name[:-3] for p in resources.files(prompts.PROMPTS_PACKAGE).iterdir() if p.name.endswith(".md")}
    assert files == set(prompts.PLACEHOLDERS)


@pytest.mark.parametrize("name", sorted(prompts.PLACEHOLDERS))
def test_template_placeholders_match_what_the_code_fills(name: str) -> None:
    template = Template(prompts.template_text(name))
    assert template.is_valid()
    assert set(template.get_identifiers()) == prompts.PLACEHOLDERS[name]
    filled = prompts.render(name, **{k: f"<{k}>" for k in prompts.PLACEHOLDERS[name]})
    assert not re.search(r"\$[A-Za-z_{]", filled)
    for key in prompts.PLACEHOLDERS[name]:
        assert f"<{key}>" in filled


def test_a_missing_value_is_an_error_not_a_silent_blank() -> None:
    with pytest.raises(KeyError):
        prompts.render("primary", stage="baseline")
    with pytest.raises(KeyError, match="no prompt template"):
        prompts.template_text("nonexistent")


def test_system_prompt_documents_exactly_the_parsed_schema_and_the_locked_rules() -> None:
    text = prompts.render("system", part_names="`report`")
    block = re.search(r"```json\n(.*?)```", text, re.DOTALL)
    assert block is not None
    example = json.loads(block.group(1))
    assert set(example) == set(VerdictBlock.model_fields)
    assert example["verdict"] not in ("GO", "NO-GO")  # an echoed example is never a verdict
    for rule in ("green-only", "death traces", "recovery chains", "context", "comparison"):
        assert rule in text


def test_recursive_prompt_carries_the_primary_verdict_and_the_packet() -> None:
    text = prompts.render(
        "recursive",
        stage="final",
        round=2,
        primary_name="first",
        primary_verdict='{"verdict": "GO"}',
        packet_sha256="f" * 64,
        packet="# Audit packet",
    )
    assert '{"verdict": "GO"}' in text and "# Audit packet" in text and "round 2" in text
