"""What one attempt of a step runs: its command line, environment and working folder (a :class:`JobSpec`).

A shell step runs its command with ``/bin/sh -c``; every other kind runs its Python function in a child process
(``pipeline.jobs.run_function``) that reads the step's :class:`StepContext` from the attempt's ``ctx.json``.
"""

from __future__ import annotations

import os
import shlex
import sys

from pipeline.config import PhasefConfig, StepConfig
from pipeline.fsio import atomic_write_text
from pipeline.jobs.context import ServiceInfo, StepContext
from pipeline.jobs.executor import JobSpec
from pipeline.layout import SessionLayout, split_key
from pipeline.registry import STEP_KINDS, load_object

LONG_COMMAND = 32 << 10
"""A shell command longer than this (bytes) is passed to ``sh`` in a file: one argument may hold at most 128 KiB
on Linux and all of them together a few MB, past which the start fails with "Argument list too long"."""
SHOWN_COMMAND = 2000
"""How much of a command the journal shows (the whole text is in the resolved config and the command file)."""


def env_names(cfg: PhasefConfig, sc: StepConfig) -> list[str]:
    """The environment variables a step may see: the project's allowlist and the step's own."""
    return list(dict.fromkeys([*cfg.env.allow, *sc.env]))


def child_env(
    cfg: PhasefConfig, layout: SessionLayout, key: str, sc: StepConfig, services: dict[str, ServiceInfo]
) -> dict[str, str]:
    env = {n: os.environ[n] for n in env_names(cfg, sc) if n in os.environ}
    env.update(
        PHASEF_SESSION_DIR=str(layout.session_dir),
        PHASEF_PROJECT_DIR=str(layout.project_dir),
        PHASEF_ARTIFACTS=str(layout.artifacts(key)),
        PHASEF_STEP=key,
        PYTHONUNBUFFERED="1",
    )
    for name, info in services.items():
        tag = name.upper().replace("-", "_").replace(".", "_")
        if info.url:
            env[f"PHASEF_SERVICE_{tag}_URL"] = info.url
        if info.model:
            env[f"PHASEF_SERVICE_{tag}_MODEL"] = info.model
    return env


def shown_command(sc: StepConfig) -> str:
    """What the journal records as the step's command: the shell text (cut when long) or the function."""
    if sc.kind != "shell":
        return step_function(sc)
    assert sc.command is not None
    if len(sc.command) <= SHOWN_COMMAND:
        return sc.command
    rest = len(sc.command) - SHOWN_COMMAND
    return f"{sc.command[:SHOWN_COMMAND]} ... ({rest} more characters, run from a file)"


def step_function(sc: StepConfig) -> str:
    """The ``module:function`` a non-shell step runs."""
    function = sc.function if sc.kind == "builtin" else STEP_KINDS[sc.kind].function
    assert function is not None
    return function


def build_spec(
    cfg: PhasefConfig,
    layout: SessionLayout,
    key: str,
    sc: StepConfig,
    attempt: int,
    services: dict[str, ServiceInfo],
) -> JobSpec:
    """The job of one attempt; writes the step function's context file first (atomically)."""
    files = layout.attempt_files(key, attempt)
    if sc.kind == "shell":
        assert sc.command is not None
        command = layout.expand_command(sc.command)
        if len(command.encode()) > LONG_COMMAND:
            atomic_write_text(files.command, command)
            argv = ["/bin/sh", str(files.command)]
        else:
            files.command.unlink(missing_ok=True)
            argv = ["/bin/sh", "-c", command]
    else:
        params = sc.params
        model_path = STEP_KINDS[sc.kind].params_model
        if model_path:
            # only the keys the config sets: a step tells them from defaults (a lora_config fills the rest)
            params = load_object(model_path).model_validate(sc.params).model_dump(mode="json", exclude_unset=True)
        stage, step = split_key(key)
        ctx = StepContext(
            session_id=layout.session_dir.name,
            session_dir=layout.session_dir,
            project_dir=layout.project_dir,
            stage=stage,
            step=step,
            kind=sc.kind,
            attempt=attempt,
            artifacts_dir=layout.artifacts(key),
            params=params,
            inputs=layout.expand(sc.inputs),
            outputs=layout.expand(sc.outputs),
            services=services,
            config_path=layout.resolved_config,
        )
        atomic_write_text(files.ctx, ctx.model_dump_json(indent=2))
        argv = [sys.executable, "-m", "pipeline.jobs.run_function", str(files.ctx), step_function(sc)]
    return JobSpec(
        key=key,
        attempt=attempt,
        argv=argv,
        cwd=layout.resolve(sc.cwd) if sc.cwd else layout.session_dir,
        env=child_env(cfg, layout, key, sc, services),
        files=files,
        shown_argv=[shlex.quote(a) for a in argv[:3]],
    )
