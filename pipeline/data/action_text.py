"""The one way an action is written as the text a model must emit.

A training target that differs from what the evaluation harness parses (key order, spacing, a missing default)
teaches the model a format the harness never asks for. So an action of the reference workload is written by the
harness's own ``render_action``; an action of another shape (a foreign trace) falls back to the same canonical
form: compact separators, sorted keys.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from pipeline.bench.prompt import Action, render_action


def action_text(action: dict[str, Any]) -> str:
    """The action as the exact JSON text the model is trained to emit."""
    try:
        return render_action(Action.model_validate(action))
    except ValidationError:
        return json.dumps(action, separators=(",", ":"), sort_keys=True)
