"""The audit step's params and the [auditors] tables: what is accepted and how bad input is reported."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.audit.params import ApiAuditor, AuditParams, CliAuditor, parse_auditor, validate_auditors
from pipeline.registry import STEP_KINDS, load_object


def test_registry_points_at_these_objects() -> None:
    spec = STEP_KINDS["audit"]
    assert load_object(spec.params_model or "") is AuditParams
    assert callable(load_object(spec.function or ""))


def test_cli_auditor_template_from_string_or_list() -> None:
    stdin = parse_auditor({"kind": "cli", "command": "gemini -y"})
    assert isinstance(stdin, CliAuditor)
    assert stdin.command == ["gemini", "-y"] and stdin.prompt_on_stdin
    by_file = parse_auditor({"kind": "cli", "command": ["claude", "-p", "@{prompt_file}"], "key_env": "KEY"})
    assert isinstance(by_file, CliAuditor) and not by_file.prompt_on_stdin


def test_api_auditor_by_url_or_service() -> None:
    by_url = parse_auditor({"kind": "api", "base_url": "http://127.0.0.1:9/v1", "model": "m"})
    assert isinstance(by_url, ApiAuditor) and by_url.retries == 2
    by_service = parse_auditor({"kind": "api", "service": "agent-model", "api_key_env": "OPENAI_API_KEY"})
    assert isinstance(by_service, ApiAuditor) and by_service.model is None


def test_validate_auditors_names_table_and_field() -> None:
    errors = validate_auditors(
        {
            "good": {"kind": "cli", "command": "gemini -y"},
            "nokind": {"command": "x"},
            "badkind": {"kind": "carrier-pigeon"},
            "typo": {"kind": "cli", "command": "x", "timout": 3},
            "placeholder": {"kind": "cli", "command": "x {prompt}"},
            "empty": {"kind": "cli", "command": ""},
            "both": {"kind": "api", "base_url": "http://127.0.0.1:1/v1", "model": "m", "service": "s"},
            "nomodel": {"kind": "api", "base_url": "http://127.0.0.1:1/v1"},
            "badurl": {"kind": "api", "base_url": "127.0.0.1:1", "model": "m"},
            "badenv": {"kind": "api", "service": "s", "api_key_env": "not a name"},
            "scalar": 3,
        }
    )
    text = "\n".join(errors)
    assert not any(e.startswith("auditors.good") for e in errors)
    assert "auditors.nokind" in text and "auditors.badkind" in text
    assert "auditors.typo.timout: unknown key" in text
    assert "auditors.placeholder.command: " in text and "unknown placeholder {prompt}" in text
    assert "auditors.empty.command: " in text and "empty" in text
    assert "exactly one of 'base_url' or 'service'" in text
    assert "'model' is required" in text
    assert "auditors.badurl.base_url" in text
    assert "auditors.badenv.api_key_env" in text
    assert "auditors.scalar: expected a table" in text
    assert validate_auditors([]) == ["auditors: expected a table of auditors, got list"]
    assert validate_auditors({}) == []


def test_audit_params() -> None:
    base = {"stage": "baseline", "auditors": ["a", "b"], "report": "r.json", "trace": "t.jsonl"}
    params = AuditParams.model_validate(base)
    assert params.rounds == 2 and params.comparison is None
    with pytest.raises(ValidationError, match="comparison"):
        AuditParams.model_validate({**base, "stage": "final"})
    with pytest.raises(ValidationError, match="different auditors"):
        AuditParams.model_validate({**base, "auditors": ["a", "a"]})
    with pytest.raises(ValidationError, match="at least 2"):
        AuditParams.model_validate({**base, "auditors": ["a"]})
    with pytest.raises(ValidationError, match="Extra inputs"):
        AuditParams.model_validate({**base, "trcae": "x"})
