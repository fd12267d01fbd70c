"""Textual widgets of phasef, each a view of state passed in by the app (no engine internals, no I/O of their own).

Small private modules, re-exported here so that screens may import ``from widgets import TraceStream``. Every name
is imported on first use (importing ``widgets.trace_stream`` runs this file first): the trace viewer's first screen
needs a few of these modules, and importing all of them (the tables, textual-plotext) took a tenth of its start-up.
The view models of ``widgets.session_view`` are data, not widgets: their builders import them from that module.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from widgets.chain_list import ChainList, ChainRow, ChainRows
    from widgets.chain_stepper import ChainStep, ChainStepper, render_step
    from widgets.delta_table import DeltaTable, render_comparison, render_delta_table
    from widgets.filter_bar import FILTER_LABELS, FilterBar, FilterState, StreamStatus, render_filters, render_status
    from widgets.headline import Headline, render_headline
    from widgets.key_hints import KeyHints, render_key_hints
    from widgets.log_tail import LogTail, render_log_tail
    from widgets.plots import BarPlot, LinePlot, Series
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

_MODULES = {
    "chain_list": ("ChainList", "ChainRow", "ChainRows"),
    "chain_stepper": ("ChainStep", "ChainStepper", "render_step"),
    "delta_table": ("DeltaTable", "render_comparison", "render_delta_table"),
    "filter_bar": ("FILTER_LABELS", "FilterBar", "FilterState", "StreamStatus", "render_filters", "render_status"),
    "headline": ("Headline", "render_headline"),
    "key_hints": ("KeyHints", "render_key_hints"),
    "log_tail": ("LogTail", "render_log_tail"),
    "plots": ("BarPlot", "LinePlot", "Series", "downsample", "histogram", "percentile", "sample"),
    "record_detail": ("RecordDetail", "RecordView", "render_record"),
    "screen_tabs": ("ScreenTabs", "render_tabs"),
    "stage_board": ("StageBoard", "format_duration", "render_stage_board"),
    "status_line": ("StatusLine",),
    "trace_stream": ("TraceRow", "TraceRows", "TraceStream", "format_row"),
    "verdict_card": (
        "DecisionLine",
        "EvidenceList",
        "VerdictCard",
        "render_decision",
        "render_evidence",
        "render_verdict",
    ),
    "virtual_list": ("VirtualList",),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}
"""Each re-exported name and the module that defines it, imported on first use."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'widgets' has no attribute {name!r}")
    value = getattr(import_module(f"widgets.{module}"), name)
    globals()[name] = value  # (found at once the next time)
    return value


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
