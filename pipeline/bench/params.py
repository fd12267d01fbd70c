"""Parameters of the ``api`` step kind: which model endpoint, which workload, which gates.

Imported by config validation, so it holds pydantic models only (no mlx, no httpx). The ``gate`` table is hashed
into the eval report (``gateConfigHash``): reports judged by different gates are not comparable.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TrapName = Literal["hang", "deadlock", "flaky", "context_bomb", "fatal"]
ALL_TRAP_NAMES: list[TrapName] = ["hang", "deadlock", "flaky", "context_bomb", "fatal"]


class GateConfig(BaseModel):
    """What a run must show to PASS; part of the comparability key of a report."""

    model_config = ConfigDict(extra="forbid")
    min_ticks: int = Field(default=100, ge=0, description="FAIL when fewer ticks were observed")
    context_budget_chars: int | None = Field(
        default=None, gt=0, description="largest allowed prompt; default: the bound the prompt settings guarantee"
    )
    max_context_growth_per_tick: float = Field(
        default=16.0, ge=0, description="largest allowed growth of the prompt per tick once the window is full"
    )
    context_warmup_ticks: int | None = Field(
        default=None, ge=0, description="ticks before the window is full (default: window + 1)"
    )
    require_evidence: bool = Field(
        default=True, description="FAIL without a death trace, a recovered chain and a trap interaction"
    )


class ApiStepParams(BaseModel):
    """The ``params`` table of an ``api`` step."""

    model_config = ConfigDict(extra="forbid")

    # -- the model endpoint -----------------------------------------------------------------------------------
    service: str | None = Field(default=None, description="a declared service (default: the step's only one)")
    base_url: str | None = Field(default=None, description="an OpenAI-compatible endpoint instead of a service")
    model: str | None = Field(default=None, description="model id sent with each request (with base_url)")
    api_key_env: str | None = Field(default=None, description="environment variable holding the API key")
    request_timeout: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=0, le=20)
    backoff: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=8.0, ge=0)
    max_tokens: int = Field(default=48, ge=1)
    temperature: float = Field(default=0.0, ge=0)

    # -- the workload -----------------------------------------------------------------------------------------
    seed: int = 0
    episodes: int = Field(default=14, ge=1)
    max_ticks: int = Field(default=40, ge=1, description="ticks per episode before it times out")
    packages: list[str] = Field(default_factory=lambda: ["h11", "idna", "mdurl"], min_length=1)
    traps: list[TrapName] = Field(default_factory=lambda: list(ALL_TRAP_NAMES))
    window: int = Field(default=4, ge=1, description="past events shown in the prompt")
    last_chars: int = Field(default=480, ge=16)
    history_chars: int = Field(default=120, ge=16)
    task_chars: int = Field(default=240, ge=32)
    unbounded_context: bool = Field(default=False, description="show every event uncut (demonstrates the check)")
    check_timeout_s: float = Field(default=2.0, gt=0)
    lock_timeout_s: float = Field(default=0.3, gt=0)
    bomb_chars: int = Field(default=32000, ge=1000)
    repair: bool = Field(default=True, description="one schema-repair retry after an invalid action")
    reflex_after: int = Field(default=2, ge=1, description="failed model turns before the reflex policy acts")
    watchdog: bool = True
    death_after: int = Field(default=8, ge=2, description="failed ticks in one chain that kill the episode")
    max_connection_errors: int = Field(
        default=12, ge=1, description="consecutive unreachable-endpoint ticks that abort the run"
    )
    trace_observation_chars: int = Field(default=2000, ge=100)
    keep_sandboxes: bool = False
    emit_interval_s: float = Field(default=0.5, ge=0)

    # -- outputs and gates ------------------------------------------------------------------------------------
    trace: str = "dirty_trace.jsonl"
    report: str = "eval_report.json"
    gate: GateConfig = Field(default_factory=GateConfig)

    @model_validator(mode="after")
    def _one_endpoint(self) -> ApiStepParams:
        if self.base_url and self.service:
            raise ValueError("give either 'service' or 'base_url', not both")
        if self.base_url and not self.model:
            raise ValueError("'base_url' needs 'model' (the model id the endpoint expects)")
        return self
