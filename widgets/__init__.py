"""Textual widgets of phasef, each a view of state passed in by the app (no engine internals, no I/O of their own).

Small private modules, re-exported here so that screens import ``from widgets import TraceStream``. The plots
module (textual-plotext) is imported on first use, so a trace viewer does not pay for it at start-up. The view
models of ``widgets.session_view`` are data, not widgets: their builders import them from that module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from widgets.chain_list import ChainList, ChainRow, ChainRows
from widgets.chain_stepper import ChainStep, ChainStepper, render_step
from widgets.delta_table import DeltaTable, render_comparison, render_delta_table
from widgets.filter_bar import FILTER_LABELS, FilterBar, FilterState, StreamStatus, render_filters, render_status
from widgets.headline import Headline, render_headline
from widgets.key_hints import KeyHints, render_key_hints
from widgets.log_tail import LogTail, render_log_tail
from widgets.record_detail import RecordDetail, RecordView, render_record
from widgets.screen_tabs import ScreenTabs, render_tabs
from widgets.stage_board import StageBoard, format_duration, render_stage_board
from widgets.status_line import StatusLine
from widgets.trace_stream import TraceRow, TraceRows, TraceStream, format_row
from widgets.verdict_card import (
    DecisionLine,
    EvidenceList,
    VerdictCard,
    render_decision,
    render_evidence,
    render_verdict,
)
from widgets.virtual_list import VirtualList

if TYPE_CHECKING:
    from widgets.plots import BarPlot, LinePlot, Series

_LAZY = {"BarPlot", "LinePlot", "Series", "downsample", "histogram", "percentile", "sample"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from widgets import plots

        return getattr(plots, name)
    raise AttributeError(name)


__all__ = [
    "FILTER_LABELS",
    "BarPlot",
    "ChainList",
    "ChainRow",
    "ChainRows",
    "ChainStep",
    "ChainStepper",
    "DecisionLine",
    "DeltaTable",
    "EvidenceList",
    "FilterBar",
    "FilterState",
    "Headline",
    "KeyHints",
    "LinePlot",
    "LogTail",
    "RecordDetail",
    "RecordView",
    "ScreenTabs",
    "Series",
    "StageBoard",
    "StatusLine",
    "StreamStatus",
    "TraceRow",
    "TraceRows",
    "TraceStream",
    "VerdictCard",
    "VirtualList",
    "format_duration",
    "format_row",
    "render_comparison",
    "render_decision",
    "render_delta_table",
    "render_evidence",
    "render_filters",
    "render_headline",
    "render_key_hints",
    "render_log_tail",
    "render_record",
    "render_stage_board",
    "render_status",
    "render_step",
    "render_tabs",
    "render_verdict",
]
