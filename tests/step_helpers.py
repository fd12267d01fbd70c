"""A step's context built the way the engine builds it, for tests that call a step function directly."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.jobs.context import StepContext

ROOT = Path(__file__).resolve().parents[1]


def step_context(
    session: Path,
    stage: str,
    step: str,
    params: Mapping[str, Any],
    *,
    kind: str = "builtin",
    project: Path = ROOT,
    artifacts: Path | None = None,
    create: bool = False,
    session_id: str = "s",
    **extra: Any,
) -> StepContext:
    """Attempt 1 of ``STAGE.step`` in ``session``; its artifacts folder is ``session/artifacts/STAGE/step`` unless
    ``artifacts`` names another, made first when ``create``. ``extra``: other fields (services, inputs...)."""
    folder = artifacts if artifacts is not None else session / "artifacts" / stage / step
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return StepContext(
        session_id=session_id,
        session_dir=session,
        project_dir=project,
        stage=stage,
        step=step,
        kind=kind,
        attempt=1,
        artifacts_dir=folder,
        params=dict(params),
        **extra,
    )
