"""What a builtin step function receives, and how it talks back to the engine.

Every non-shell, non-gate step kind runs a Python function ``f(ctx: StepContext) -> dict`` in its own child process
(own process group, so timeouts and cancel kill everything it started). The child speaks to the engine over its
stdout: a line that starts with ``EVENT_PREFIX`` carries one JSON event that the engine journals (``step_progress``),
any other line is log output. The returned dict is the step's summary: written to ``summary.json`` in the step's
artifact folder and journaled with ``step_succeeded``. Raising ``StepFailed`` (or any exception) fails the attempt.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.layout import resolve_path

__all__ = [
    "EVENT_PREFIX",
    "ServiceInfo",
    "StepCancelled",
    "StepContext",
    "StepFailed",
    "StepFunction",
    "parse_params",
    "resolve_path",
]

EVENT_PREFIX = "@@phasef-event "


class StepFailed(Exception):
    """A step ended in a failure that it explains itself (no traceback is needed)."""


_Params = TypeVar("_Params", bound=BaseModel)


def parse_params(model: type[_Params], params: dict[str, Any]) -> _Params:
    """A step's ``params`` as ``model``; a bad one fails the step naming its first bad field (``params.a.b: why``)."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise StepFailed(f"params.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None


class StepCancelled(BaseException):
    """Raised inside a step function when the engine asks it to stop (SIGTERM); catch it to save state."""


class ServiceInfo(BaseModel):
    """A running service a step declared it needs (for example an ``mlx_lm.server``)."""

    model_config = ConfigDict(extra="allow")
    name: str
    kind: str
    url: str | None = None
    model: str | None = None


class StepContext(BaseModel):
    """Serialized to JSON and handed to the child process that runs the step function."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    session_id: str
    session_dir: Path
    project_dir: Path
    stage: str
    step: str
    kind: str
    attempt: int
    artifacts_dir: Path = Field(description="sessions/<id>/artifacts/<stage>/<step>/, created before the call")
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: list[Path] = Field(default_factory=list, description="declared inputs, globs expanded, resolved")
    outputs: list[Path] = Field(default_factory=list, description="declared outputs, resolved")
    services: dict[str, ServiceInfo] = Field(default_factory=dict)
    config_path: Path | None = None

    def emit(self, event: str, **payload: Any) -> None:
        """Send a structured progress event to the engine (journaled as ``step_progress``)."""
        line = json.dumps({"event": event, **payload}, default=str, separators=(",", ":"))
        with _emit_lock:
            sys.stdout.write(EVENT_PREFIX + line + "\n")
            sys.stdout.flush()

    def log(self, message: str) -> None:
        """A plain log line (goes to the step's log file and the live log tail)."""
        with _emit_lock:
            sys.stdout.write(message.rstrip("\n") + "\n")
            sys.stdout.flush()

    def artifact(self, name: str) -> Path:
        """Path of a file in this step's artifact folder."""
        return self.artifacts_dir / name

    def resolve(self, path: str | Path) -> Path:
        """Resolve a config path: ``{project}``/``{session}`` templates, relative paths against the session."""
        return resolve_path(str(path), self.session_dir, self.project_dir)


_emit_lock = threading.Lock()

StepFunction = Callable[[StepContext], dict[str, Any]]
