"""Step kinds and service kinds, by name, as lazy import paths.

Kinds other than ``shell`` and ``gate`` run a Python function in a child process (see ``pipeline.jobs.context``).
Each kind names a pydantic model for its ``params`` table (validated by ``phasef config check``; keep the module
that defines it light, no mlx or heavy imports at module level) and, for function kinds, the function to call.
A ``builtin`` step names its own function with ``function = "module:callable"``; only registered step functions are
accepted: the ones in ``BUILTIN_FUNCTIONS`` below, and the ones a project declares in ``[project] step_functions``.
Any other importable callable (``os:system``) is refused by ``phasef config check`` with the line that names it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KindSpec:
    params_model: str | None
    """``module:Class`` of the pydantic model for the step's ``params`` table, or None for free-form."""
    function: str | None
    """``module:callable`` run in the child process; None for engine-native kinds (shell, gate, builtin)."""


STEP_KINDS: dict[str, KindSpec] = {
    "shell": KindSpec(None, None),
    "gate": KindSpec(None, None),
    "builtin": KindSpec(None, None),
    "api": KindSpec("pipeline.bench.params:ApiStepParams", "pipeline.bench.api_step:run"),
    "mlx_train": KindSpec("pipeline.train.params:TrainParams", "pipeline.train.runner:run"),
    "audit": KindSpec("pipeline.audit.params:AuditParams", "pipeline.audit.step:run"),
}

BUILTIN_FUNCTIONS: dict[str, str | None] = {
    # every step function phasef ships -> the pydantic model of its ``params`` table (None: free-form), so that
    # ``phasef config check`` catches a bad key before a long run reaches the step
    "pipeline.models.tiny:init_step": None,
    "pipeline.data.extract_journal:run": "pipeline.data.extract_journal:ExtractParams",
    "pipeline.data.guard_dataset:run": "pipeline.data.guard_dataset:GuardParams",
    "pipeline.data.guard_split:run": "pipeline.data.guard_split:SplitParams",
    "pipeline.data.dataset_stats:run": "pipeline.data.dataset_stats:StatsParams",
    "pipeline.data.sft_dpo_recipe:run": "pipeline.data.sft_dpo_recipe:RecipeParams",
    "pipeline.data.prepare_mlx:run": "pipeline.data.prepare_mlx:PrepareParams",
    "pipeline.report.compare:compare_step": "pipeline.report.compare:CompareParams",
    "pipeline.report.matrix:matrix_step": "pipeline.report.matrix:MatrixParams",
    "pipeline.train.handoff:build_step": "pipeline.train.params:HandoffParams",
    "pipeline.bench.validate:validate_step": "pipeline.bench.validate:ValidateParams",
}

BUILTIN_PARAMS: dict[str, str] = {fn: model for fn, model in BUILTIN_FUNCTIONS.items() if model is not None}

SERVICE_KINDS: dict[str, str] = {
    # kind -> ``module:Class`` implementing ``pipeline.services.Service``
    "mlx_serve": "pipeline.serve:MlxServe",
}


def load_object(path: str) -> Any:
    """Import ``module:attr`` and return the attribute."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:attribute', got {path!r}")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ValueError(f"{module_name} has no attribute {attr!r}") from exc
