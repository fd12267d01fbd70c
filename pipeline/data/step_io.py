"""What every Stage C step does the same way: validate its params, find its inputs, report bad input.

A step finds its input either in its own params (``input = "..."``, a file or a folder, resolved like any config
path) or, when that is not set, among the step's declared ``inputs``. A folder input is searched for the file
name the step expects (the previous step's output name), so ``inputs = ["artifacts/C/guard-sft-split"]`` works
as well as naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.data.jsonl import BAD_LINES_NAME, BadLineLog
from pipeline.data.rows import pydantic_error_text
from pipeline.jobs.context import StepContext, StepFailed

P = TypeVar("P", bound=BaseModel)


class StepParams(BaseModel):
    """Base of every Stage C params model: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


def load_params(ctx: StepContext, model: type[P]) -> P:
    try:
        return model.model_validate(ctx.params)
    except ValidationError as exc:
        raise StepFailed(f"params of {ctx.stage}.{ctx.step}: {pydantic_error_text(exc)}") from exc


def candidate_paths(ctx: StepContext, configured: str | list[str] | None) -> list[Path]:
    """The paths named in params (resolved), else the step's declared inputs."""
    if configured is None:
        return list(ctx.inputs)
    raw = [configured] if isinstance(configured, str) else configured
    return [ctx.resolve(p) for p in raw]


def find_file(ctx: StepContext, configured: str | list[str] | None, name: str, any_name: bool = False) -> Path:
    """The input file called ``name`` (given directly, or inside a given folder); with ``any_name``, a single
    input file is taken whatever it is called."""
    paths = candidate_paths(ctx, configured)
    for path in paths:
        if path.is_file() and path.name == name:
            return path
        if path.is_dir() and (path / name).is_file():
            return path / name
    if any_name and len(paths) == 1 and paths[0].is_file():
        return paths[0]
    looked = ", ".join(str(p) for p in paths) or "(no inputs declared and no 'input' param)"
    raise StepFailed(f"{ctx.stage}.{ctx.step}: no input file {name!r} found in: {looked}")


def find_files(ctx: StepContext, configured: str | list[str] | None, pattern: str, what: str) -> list[Path]:
    """Every input file (given directly, or matching ``pattern`` inside a given folder), in a stable order."""
    found: list[Path] = []
    missing: list[str] = []
    for path in candidate_paths(ctx, configured):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.glob(pattern) if p.is_file()))
        else:
            missing.append(str(path))
    if missing:
        raise StepFailed(f"{ctx.stage}.{ctx.step}: {what} not found: {', '.join(missing)}")
    if not found:
        raise StepFailed(f"{ctx.stage}.{ctx.step}: no {what} given (set params.input or the step's inputs)")
    return list(dict.fromkeys(found))


def finish_bad_lines(ctx: StepContext, bad: BadLineLog) -> dict[str, Any]:
    """Write ``bad_lines.jsonl`` (always, so its absence never hides anything) and log a line per problem."""
    bad.write(ctx.artifact(BAD_LINES_NAME))
    for item in bad.items()[:20]:
        ctx.log(f"bad input: {item}")
    if len(bad) > 20:
        ctx.log(f"bad input: ... {len(bad) - 20} more in {BAD_LINES_NAME}")
    return bad.summary()
