"""The audit step's ``params`` table and the ``[auditors.<name>]`` tables it refers to.

Kept light (pydantic only) because ``phasef config check`` imports it to validate a plan without running it.
An auditor is a backend that answers one prompt with one verdict: either a command line (``gemini -y``,
``claude -p`` ...) that reads the prompt on stdin or from a file, or an OpenAI-compatible chat endpoint, given
directly or as a service the engine runs (the session's model server).
"""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

PROMPT_FILE_PLACEHOLDER = "{prompt_file}"
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Stage = Literal["baseline", "final"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


class CliAuditor(_Strict):
    """A headless command: the prompt goes on stdin, or into a file when an argument says ``{prompt_file}``."""

    kind: Literal["cli"]
    title: str | None = None
    command: list[str] = Field(description="argv template, e.g. ['gemini', '-y']; a string is split like a shell")
    key_env: str | None = Field(
        default=None,
        description="environment variable the command needs (its API key); unset blocks the gate",
    )
    timeout: float | None = Field(default=None, gt=0, description="seconds per call; default: the step's timeout")
    retries: int = Field(default=0, ge=0, le=10, description="extra tries after a non-zero exit or a timeout")

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return shlex.split(v) if isinstance(v, str) else v

    @field_validator("command")
    @classmethod
    def _template(cls, v: list[str]) -> list[str]:
        if not v or not v[0].strip():
            raise ValueError("the command is empty")
        for arg in v:
            for found in _PLACEHOLDER.findall(arg):
                if found != PROMPT_FILE_PLACEHOLDER:
                    raise ValueError(
                        f"unknown placeholder {found} in {arg!r}; the only one is {PROMPT_FILE_PLACEHOLDER}"
                    )
        return v

    @field_validator("key_env")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        return _check_env_name(v)

    @property
    def prompt_on_stdin(self) -> bool:
        return not any(PROMPT_FILE_PLACEHOLDER in arg for arg in self.command)


class ApiAuditor(_Strict):
    """An OpenAI-compatible chat endpoint, named by ``base_url`` + ``model`` or by a running ``service``."""

    kind: Literal["api"]
    title: str | None = None
    base_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8080/v1")
    model: str | None = Field(default=None, description="required with base_url; overrides the service's model")
    service: str | None = Field(default=None, description="a service of the run whose url and model are used")
    api_key_env: str | None = Field(default=None, description="environment variable holding the key; unset blocks")
    timeout: float = Field(default=60.0, gt=0, description="seconds per HTTP request")
    retries: int = Field(default=2, ge=0, le=10, description="extra attempts after a failed request")
    max_tokens: int = Field(default=1024, ge=16, le=65536)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    @field_validator("api_key_env")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        return _check_env_name(v)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @model_validator(mode="after")
    def _endpoint(self) -> ApiAuditor:
        if (self.base_url is None) == (self.service is None):
            raise ValueError("give exactly one of 'base_url' or 'service'")
        if self.base_url is not None and not self.model:
            raise ValueError("'model' is required with 'base_url'")
        return self


AnyAuditor = Annotated[CliAuditor | ApiAuditor, Field(discriminator="kind")]


class AuditorConfig(RootModel[AnyAuditor]):
    """One ``[auditors.<name>]`` table; ``kind = "cli"`` or ``kind = "api"`` picks the shape."""


def parse_auditor(data: dict[str, Any]) -> CliAuditor | ApiAuditor:
    """Validate one auditor table (raises ``pydantic.ValidationError``)."""
    return AuditorConfig.model_validate(data).root


def validate_auditors(tables: Any) -> list[str]:
    """Every problem in an ``[auditors]`` table, as ``auditors.<name>.<field>: message`` lines (empty if fine)."""
    if not isinstance(tables, dict):
        return [f"auditors: expected a table of auditors, got {type(tables).__name__}"]
    errors: list[str] = []
    for name, data in tables.items():
        if not isinstance(data, dict):
            errors.append(f"auditors.{name}: expected a table, got {type(data).__name__}")
            continue
        try:
            parse_auditor(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = [str(p) for p in err["loc"] if str(p) not in ("cli", "api")]
                field = ".".join(["auditors", str(name), *loc])
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                if err["type"] == "missing":
                    msg = "required key is missing"
                errors.append(f"{field}: {msg}")
    return errors


class AuditParams(_Strict):
    """``params`` of an ``audit`` step. Paths go through ``ctx.resolve`` (``{project}``, ``{session}``)."""

    stage: Stage = Field(description="baseline: report + trace evidence; final: also the comparison")
    auditors: list[str] = Field(min_length=2, max_length=2, description="[primary, recursive] auditor names")
    report: str = Field(description="the eval (or merged) report the verdict is about")
    trace: str = Field(description="the dirty trace (JSONL) with the deaths and recovery chains")
    analysis: str | None = Field(
        default=None, description="a saved trace analysis (JSON) to use instead of analysing the trace here"
    )
    comparison: str | None = Field(default=None, description="baseline-vs-fine-tuned comparison (final stage)")
    notes: str | None = Field(default=None, description="the architect's notes the auditors must read")
    rounds: int = Field(default=2, ge=1, le=5, description="rounds of primary+recursive before disagreement stops")
    timeout: float = Field(
        default=300.0, gt=0, description="seconds per auditor call; a CLI auditor's own timeout replaces it"
    )
    max_part_chars: int = Field(
        default=12000,
        ge=500,
        description="characters of each part shown to the auditors (the hash covers all)",
    )
    max_deaths: int = Field(default=5, ge=1, description="death traces put in the packet")
    max_chains: int = Field(default=20, ge=1, description="recovery chains put in the packet")

    @field_validator("auditors")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if v[0] == v[1]:
            raise ValueError("the primary and the recursive auditor must be different auditors")
        return v

    @model_validator(mode="after")
    def _final_needs_comparison(self) -> AuditParams:
        if self.stage == "final" and not self.comparison:
            raise ValueError("the final audit needs 'comparison' (baseline vs fine-tuned)")
        return self
