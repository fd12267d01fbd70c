"""The checks of a parsed config.toml that its models alone cannot make, each problem named with file:line:key.

``check_config`` checks references between sections (needs, pools, services, hosts, the final gate), the step
functions the project declares and every step's ``params`` against its kind's model; ``find_cycle`` finds a
dependency cycle. (``key_lines`` and ``validation_issues``, which name the line of a key, are in
``pipeline.config_section``.)
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from pipeline.config_model import ID_PATTERN, PhasefConfig
from pipeline.config_section import _line_for, validation_issues
from pipeline.problems import Problem
from pipeline.registry import BUILTIN_FUNCTIONS, BUILTIN_PARAMS, STEP_KINDS, load_object


def _check_references(cfg: PhasefConfig, file: str, lines: dict[tuple[str, ...], int]) -> list[Problem]:
    issues: list[Problem] = []

    def issue(loc: tuple[str, ...], msg: str) -> None:
        issues.append(Problem(file, _line_for(lines, loc), msg, ".".join(loc)))

    for stage_id, stage in cfg.stages.items():
        if not re.match(ID_PATTERN, stage_id) or "." in stage_id:
            issue(("stages", stage_id), "stage ids may use letters, digits, '_' and '-' only")
        for need in stage.needs:
            if need not in cfg.stages:
                issue(("stages", stage_id, "needs"), f"needs missing stage {need!r}")
        for step_id, step in stage.steps.items():
            loc = ("stages", stage_id, "steps", step_id)
            if "." in step_id or not re.match(ID_PATTERN, step_id):
                issue(loc, "step ids may use letters, digits, '_' and '-' only")
            for need in step.needs:
                target = need if "." in need else f"{stage_id}.{need}"
                s, _, t = target.partition(".")
                if s not in cfg.stages or t not in cfg.stages[s].steps:
                    issue((*loc, "needs"), f"needs missing step {need!r}")
            if step.pool not in cfg.pools:
                issue((*loc, "pool"), f"unknown pool {step.pool!r}; declared: {', '.join(cfg.pools)}")
            for svc in step.services:
                if svc not in cfg.services:
                    issue((*loc, "services"), f"unknown service {svc!r}")
            if step.host is not None and step.host not in cfg.hosts:
                declared = ", ".join(cfg.hosts) or "none"
                issue((*loc, "host"), f"unknown host {step.host!r}; declared: {declared}")
            for name in step.hosts:
                if name not in cfg.hosts:
                    declared = ", ".join(cfg.hosts) or "none"
                    issue((*loc, "hosts"), f"unknown host {name!r}; declared: {declared}")
            if step.shards > 1 and (step.kind != "api" or step.ranks > 1):
                issue((*loc, "shards"), f"shards split the episodes of an api step (ranks = 1), not {step.kind}")
            if (step.ranks > 1 or step.hosts) and step.kind not in ("mlx_train", "builtin") and step.shards == 1:
                issue((*loc, "ranks"), f"data-parallel ranks are for mlx_train (and builtin) steps, not {step.kind}")
            batch = step.params.get("batch_size")
            if batch is None and step.ranks > 1 and step.kind == "mlx_train" and "lora_config" not in step.params:
                batch = load_object("pipeline.train.params:TrainParams").model_fields["batch_size"].default
            if step.ranks > 1 and step.kind == "mlx_train" and isinstance(batch, int) and batch % step.ranks:
                issue((*loc, "params", "batch_size"), f"batch_size {batch} is not divisible by ranks = {step.ranks}")
            if step.host is not None and step.kind == "gate":
                issue((*loc, "host"), "a gate runs on the supervisor, not on a host")
            if step.audit:
                s, _, t = step.audit.partition(".")
                if s not in cfg.stages or t not in cfg.stages[s].steps:
                    issue((*loc, "audit"), f"audit names missing step {step.audit!r}")
    if cfg.project.final_gate:
        s, _, t = cfg.project.final_gate.partition(".")
        if s not in cfg.stages or t not in cfg.stages[s].steps or cfg.stages[s].steps[t].kind != "gate":
            issue(("project", "final_gate"), f"{cfg.project.final_gate!r} is not a gate step")
    for name, size in cfg.pools.items():
        if size < 1:
            issue(("pools", name), "a pool needs at least 1 slot")
    if not issues:
        cycle = find_cycle(cfg.dependencies())
        if cycle:
            s, _, t = cycle[0].partition(".")
            issue(("stages", s, "steps", t, "needs"), "dependency cycle: " + " -> ".join(cycle))
    return issues


def _check_params(cfg: PhasefConfig, file: str, lines: dict[tuple[str, ...], int]) -> list[Problem]:
    issues: list[Problem] = []
    for stage_id, step_id, step in cfg.iter_steps():
        spec = STEP_KINDS[step.kind]
        loc = ("stages", stage_id, "steps", step_id, "params")
        model_path = spec.params_model
        if step.kind == "builtin" and step.function:
            floc = ("stages", stage_id, "steps", step_id, "function")
            if step.function not in BUILTIN_FUNCTIONS and step.function not in cfg.project.step_functions:
                message = (
                    f"{step.function!r} is not a registered step function; use one of phasef's "
                    f"({', '.join(sorted(BUILTIN_FUNCTIONS))}) or declare the project's own in "
                    "[project] step_functions"
                )
                issues.append(Problem(file, _line_for(lines, floc), message, ".".join(floc)))
                continue
            if step.function in BUILTIN_FUNCTIONS:  # declared ones are loaded (and reported) once, below
                try:
                    load_object(step.function)
                except (ImportError, ValueError) as exc:
                    issues.append(Problem(file, _line_for(lines, floc), f"cannot load: {exc}", ".".join(floc)))
                    continue
            model_path = BUILTIN_PARAMS.get(step.function)
        if model_path is None:
            continue
        try:
            model = load_object(model_path)
        except (ImportError, ValueError) as exc:
            issues.append(Problem(file, _line_for(lines, loc), f"kind unavailable: {exc}", ".".join(loc)))
            continue
        try:
            model.model_validate(step.params)
        except ValidationError as exc:
            issues.extend(validation_issues(exc, file, lines, loc))
    return issues


def _check_step_functions(cfg: PhasefConfig, file: str, lines: dict[tuple[str, ...], int]) -> list[Problem]:
    """Every function the project declares must be ``module:callable``, importable and callable."""
    issues: list[Problem] = []
    loc = ("project", "step_functions")
    for name in cfg.project.step_functions:
        try:
            obj = load_object(name)
        except Exception as exc:  # importing the project's module may raise anything; report it, do not crash
            problem = f"cannot load {name!r}: {type(exc).__name__}: {exc}"
        else:
            if callable(obj):
                continue
            problem = f"{name!r} is not callable"
        issues.append(Problem(file, _line_for(lines, loc), problem, ".".join(loc)))
    return issues


def find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """Return one dependency cycle as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in deps.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in deps:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def check_config(cfg: PhasefConfig, file: str, lines: dict[tuple[str, ...], int]) -> list[Problem]:
    """Every problem of a config that validated against its models."""
    issues = _check_references(cfg, file, lines) + _check_step_functions(cfg, file, lines)
    return issues + _check_params(cfg, file, lines)
