"""The screens of the TUI, one module each; every screen is a view of the app's data source.

Each screen class is imported on first use (importing ``phasef_tui.screens.traces`` runs this file first): the trace
viewer's first screen must not pay for the dashboard's, the audit's or the report's modules."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phasef_tui.screens.audit import AuditScreen
    from phasef_tui.screens.chains import ChainsScreen
    from phasef_tui.screens.dashboard import DashboardScreen
    from phasef_tui.screens.help import HelpScreen
    from phasef_tui.screens.reason import ReasonDialog
    from phasef_tui.screens.report import ReportScreen
    from phasef_tui.screens.traces import TracesScreen

_LAZY = {
    "AuditScreen": "audit",
    "ChainsScreen": "chains",
    "DashboardScreen": "dashboard",
    "HelpScreen": "help",
    "ReasonDialog": "reason",
    "ReportScreen": "report",
    "TracesScreen": "traces",
}
"""Each screen class and the module that defines it."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'phasef_tui.screens' has no attribute {name!r}")
    value = getattr(import_module(f"phasef_tui.screens.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AuditScreen",
    "ChainsScreen",
    "DashboardScreen",
    "HelpScreen",
    "ReasonDialog",
    "ReportScreen",
    "TracesScreen",
]
