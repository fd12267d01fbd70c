"""What the engine's modules share about one running session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.config import PhasefConfig
from pipeline.layout import SessionLayout
from pipeline.recorder import Recorder


@dataclass(frozen=True)
class SessionParts:
    cfg: PhasefConfig
    layout: SessionLayout
    recorder: Recorder
    stop_requested: Callable[[str], bool]
    """Whether the step (key) must stop: it or the whole run was cancelled."""
