"""Trace widgets as pure views: chain stepper, chain list rows, record detail, filter bar, status line, tabs."""

from __future__ import annotations

from tests.tui_helpers import plain_text as plain
from widgets.chain_list import ChainRow, format_chain_row
from widgets.chain_stepper import TEXT_LIMIT, ChainStep, render_step
from widgets.filter_bar import FilterState, compact_count, render_filters, render_status
from widgets.record_detail import RecordView, render_record
from widgets.screen_tabs import render_tabs


def test_chain_step_shows_what_the_actor_saw_and_did() -> None:
    step = ChainStep(
        chain="c1",
        position=0,
        length=3,
        line=9,
        episode="e1",
        tick=4,
        actor="model",
        role="failure",
        outcome="error",
        error_class="SchemaViolation",
        context=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "x" * (TEXT_LIMIT + 50)}],
        context_chars=5000,
        raw_output="not json",
        schema_error="missing field 'tool'",
        problems=("schema: field 'outcome': bad",),
    )
    text = plain(render_step(step), 140)
    assert "chain c1  tick 1/3  · episode e1 · t4 · line 10" in text
    assert "role failure  actor model  mechanism none  outcome error (SchemaViolation)" in text
    assert "context the actor saw · 2 messages · 5,000 chars" in text and "system │ be brief" in text
    assert "…(50 more characters)" in text
    assert "schema error" in text and "missing field 'tool'" in text and "(no valid action)" in text
    assert "schema: field 'outcome': bad" in text
    repaired = ChainStep(chain="c1", position=1, length=3, line=10, recovery="schema_repair", action={"tool": "ls"})
    text = plain(render_step(repaired))
    assert "mechanism schema_repair" in text and '{"tool": "ls"}' in text and "context · not recorded" in text


def test_chain_row() -> None:
    row = ChainRow("c12", "episode-0042", 4, "Timeout", "death", ("watchdog", "reflex"))
    text = format_chain_row(row, 3, 0).plain
    assert text.split() == ["1", "c12", "isode-0042", "4t", "death", "Timeout", "watchdog,reflex"]
    assert "open" in format_chain_row(ChainRow("c1", None, 1), 3, 4).plain


def test_record_detail() -> None:
    view = RecordView("t.jsonl", 4, {"kind": "tick", "tick": 3}, problems=("schema: field 'outcome': Field required",))
    text = plain(render_record(view))
    assert text.splitlines()[0] == "t.jsonl:5" and "Field required" in text and '"tick": 3' in text
    raw = plain(render_record(RecordView("t.jsonl", 0, None, raw="{oops", problems=("t.jsonl:1: not valid JSON",))))
    assert "{oops" in raw and "not valid JSON" in raw


def test_filter_bar_and_status() -> None:
    state = FilterState(
        active=frozenset({"death"}),
        counts={"death": 3, "recovery": 12_345, "thrash": 2_500_000},
        keys={"death": "d", "thrash": "ctrl+t"},
        shown=3,
        total=100,
        cursor=1,
        summarized_pct=40.0,
        search="deadlock",
        search_note="line 7",
        follow=False,
        source="t.jsonl",
    )
    filters = render_filters(state).plain
    assert filters.startswith("death 3  recovery 12k  trap 0  schema 0  ctrl+t:thrash 2.5M")
    assert filters.endswith("(filtered)")
    status = render_status(state).plain
    assert status == "paused 2/3 of 100  scanning 40%  /deadlock line 7  t.jsonl"
    assert [compact_count(n) for n in (999, 1500, 25_000, 3_400_000)] == ["999", "1.5k", "25k", "3.4M"]
    assert render_status(FilterState(indexed_pct=10, summarized_pct=0)).plain.startswith("FOLLOW 0/0  indexing 10%")


def test_tabs() -> None:
    text = render_tabs((("1", "Dashboard"), ("2", "Traces")), "Traces", "session s", "◆ 1 gate waiting").plain
    assert text == " 1 Dashboard  2 Traces  ◆ 1 gate waiting  session s"
