"""The screens of the TUI, one module each; every screen is a view of the app's data source."""

from phasef_tui.screens.audit import AuditScreen
from phasef_tui.screens.chains import ChainsScreen
from phasef_tui.screens.dashboard import DashboardScreen
from phasef_tui.screens.help import HelpScreen
from phasef_tui.screens.reason import ReasonDialog
from phasef_tui.screens.report import ReportScreen
from phasef_tui.screens.traces import TracesScreen

__all__ = [
    "AuditScreen",
    "ChainsScreen",
    "DashboardScreen",
    "HelpScreen",
    "ReasonDialog",
    "ReportScreen",
    "TracesScreen",
]
