"""The sections of config.toml as strict pydantic models (``PhasefConfig`` is the whole file).

The plan is a set of stages (``[stages.<id>]``) that need each other, each holding steps
(``[stages.<id>.steps.<step>]``). A step's dependencies are the steps of every stage its stage needs, the steps it
names in ``needs`` (``other`` in the same stage or ``STAGE.other``), and, in a ``sequential`` stage, the step before
it. Kind-specific settings live in the step's ``params`` table and are validated by the kind's own model
(``pipeline.config_check``). Read a file through ``pipeline.config``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import Field, field_validator, model_validator

from pipeline.audit.params import AnyAuditor
from pipeline.config_tui import Strict, TuiConfig
from pipeline.layout import output_problem
from pipeline.registry import SERVICE_KINDS, STEP_KINDS

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
DEFAULT_ENV_ALLOW = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV"]


def _one_of(what: str, value: str, known: Iterable[str]) -> str:
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; known: {', '.join(sorted(known))}")
    return value


class ProjectConfig(Strict):
    name: str = "phasef"
    sessions_dir: str = "sessions"
    final_gate: str | None = Field(
        default=None,
        description="STAGE.step of the gate whose decision is the run's GO/NO-GO (default: last gate)",
    )
    step_functions: list[str] = Field(
        default_factory=list,
        description="the project's own step functions ('module:callable') that builtin steps may name",
    )
    final_override: bool = Field(
        default=True,
        description="may an operator sign GO at the final gate over an unmet pass criterion (the run then ends "
        "GO-OVERRIDE); false refuses such a GO",
    )


class EnvConfig(Strict):
    allow: list[str] = Field(default_factory=lambda: list(DEFAULT_ENV_ALLOW))


class ServiceConfig(Strict):
    kind: str
    title: str | None = None
    pool: str | None = None
    start_timeout: float = Field(default=120.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        return _one_of("service kind", v, SERVICE_KINDS)


class HostConfig(Strict):
    """A machine that runs steps over SSH (``[hosts.NAME]``); see docs/remote.md."""

    address: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    identity: str | None = Field(default=None, description="private key file; default: the SSH agent and ~/.ssh")
    known_hosts: str = Field(default="~/.ssh/known_hosts", description="strict host key checking against this file")
    workdir: str = Field(default="~/phasef-work", description="where sessions' remote folders live")
    python: str = Field(default="python3", description="used for python steps and training on that host")
    connect_timeout: float = Field(default=15.0, gt=0)
    connect_retries: int = Field(default=3, ge=0, le=100, description="attempts after the first, with backoff")
    reconnect_s: float = Field(default=300.0, ge=0, description="how long a running step may stay unreachable")


class StepConfig(Strict):
    kind: str
    title: str | None = None
    needs: list[str] = Field(default_factory=list)
    command: str | None = None
    cwd: str | None = None
    function: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0, description="seconds; for a gate, how long to wait")
    retries: int = Field(default=0, ge=0, le=100)
    backoff: float = Field(default=1.0, ge=0, description="first retry delay in seconds, doubled each retry")
    backoff_max: float = Field(default=60.0, ge=0)
    jitter: float = Field(default=0.1, ge=0, le=1, description="random extra delay, as a fraction")
    env: list[str] = Field(default_factory=list, description="extra environment variables passed through")
    pool: str = "default"
    services: list[str] = Field(default_factory=list)
    cache: bool = Field(default=True, description="skip when fingerprint and output hashes are unchanged")
    host: str | None = Field(default=None, description="a [hosts.NAME] to run the step on, over SSH")
    ranks: int = Field(default=1, ge=1, le=64, description="data-parallel ranks over MLX's ring backend")
    hosts: list[str] = Field(default_factory=list, description="hosts the ranks (or shards) are spread over, in turn")
    shards: int = Field(default=1, ge=1, le=256, description="api steps: episodes split over this many instances")
    # gate only
    evidence: list[str] = Field(default_factory=list)
    prompt: str | None = None
    audit: str | None = Field(default=None, description="STAGE.step of the audit whose verdict binds this gate")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        return _one_of("step kind", v, STEP_KINDS)

    @field_validator("outputs")
    @classmethod
    def _outputs_inside(cls, v: list[str]) -> list[str]:
        problems = [p for p in map(output_problem, v) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> StepConfig:
        if self.kind == "shell" and not self.command:
            raise ValueError("a shell step needs 'command'")
        if self.kind == "builtin" and not self.function:
            raise ValueError("a builtin step needs 'function' (module:callable)")
        if self.kind != "shell" and self.command:
            raise ValueError(f"'command' is only for shell steps, not {self.kind}")
        if self.kind != "builtin" and self.function:
            raise ValueError(f"'function' is only for builtin steps, not {self.kind}")
        if self.kind != "gate" and (self.evidence or self.prompt or self.audit):
            raise ValueError("'evidence', 'prompt' and 'audit' are only for gate steps")
        return self


class StageConfig(Strict):
    title: str
    needs: list[str] = Field(default_factory=list)
    sequential: bool = False
    steps: dict[str, StepConfig] = Field(default_factory=dict)


class ModelConfig(Strict):
    """``[models.NAME]``: a model the project names, for people and reports to refer to."""

    path: str = Field(description="a local model folder or a hub id")
    title: str | None = None


class PhasefConfig(Strict):
    """The whole config.toml."""

    project: ProjectConfig = Field(default_factory=ProjectConfig)
    env: EnvConfig = Field(default_factory=EnvConfig)
    pools: dict[str, int] = Field(default_factory=lambda: {"default": 2})
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    hosts: dict[str, HostConfig] = Field(default_factory=dict)
    auditors: dict[str, AnyAuditor] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    tui: TuiConfig = Field(default_factory=TuiConfig)
    stages: dict[str, StageConfig]

    # -- derived views --------------------------------------------------------------------------------------
    def iter_steps(self) -> Iterator[tuple[str, str, StepConfig]]:
        for stage_id, stage in self.stages.items():
            for step_id, step in stage.steps.items():
                yield stage_id, step_id, step

    def step(self, key: str) -> StepConfig:
        stage_id, _, step_id = key.partition(".")
        return self.stages[stage_id].steps[step_id]

    def step_keys(self) -> list[str]:
        return [f"{s}.{t}" for s, t, _ in self.iter_steps()]

    def dependencies(self) -> dict[str, list[str]]:
        """``STAGE.step`` -> the steps it waits for (resolved, deduplicated, in config order)."""
        deps: dict[str, list[str]] = {}
        for stage_id, stage in self.stages.items():
            before: list[str] = []
            for need in stage.needs:
                before.extend(f"{need}.{s}" for s in self.stages[need].steps)
            previous: str | None = None
            for step_id, step in stage.steps.items():
                key = f"{stage_id}.{step_id}"
                mine = list(before)
                mine.extend(n if "." in n else f"{stage_id}.{n}" for n in step.needs)
                if stage.sequential and previous:
                    mine.append(previous)
                deps[key] = list(dict.fromkeys(mine))
                previous = key
        return deps

    def final_gate_key(self) -> str | None:
        if self.project.final_gate:
            return self.project.final_gate
        gates = [f"{s}.{t}" for s, t, c in self.iter_steps() if c.kind == "gate"]
        return gates[-1] if gates else None
