"""The one way an action is written as the text a model must emit.

A training target that differs from what the evaluation harness parses (key order, spacing) teaches the model a
format the harness never asks for, so the serialization is canonical: compact separators, sorted keys.
"""

from __future__ import annotations

import json
from typing import Any


def action_text(action: dict[str, Any]) -> str:
    """The action as the exact JSON text the model is trained to emit."""
    return json.dumps(action, separators=(",", ":"), sort_keys=True)
