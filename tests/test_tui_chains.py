"""The Chains screen (Pilot): the chain catalogue, stepping tick by tick, jumping between chains, live growth."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from phasef_tui.app import PhasefApp
from phasef_tui.data_source import TraceFileSource
from phasef_tui.feed_chains import FeedChains
from phasef_tui.screens.chains import ChainsScreen
from phasef_tui.trace_feed import TraceFeed
from tests.tui_helpers import (
    append_records,
    many_ticks,
    open_feed,
    plain_text,
    sample_records,
    tick,
    until,
    write_trace,
)
from widgets.chain_list import ChainList

SIZE = (120, 36)


def shown(app: PhasefApp) -> str:
    return plain_text(app.screen.query_one("#chain-step-body", Static).content, 160)


def chains_app(path: Path, follow: bool = False) -> PhasefApp:
    return PhasefApp(TraceFileSource(TraceFeed(path, follow=follow)), blink=False, initial="chains")


def test_catalogue_rows_and_steps(tmp_path: Path) -> None:
    feed = open_feed(write_trace(tmp_path / "t.jsonl", sample_records()))
    try:
        chains = FeedChains(feed)
        assert len(chains) == 2
        first, second = chains.chain_row(0), chains.chain_row(1)
        assert (first.name, first.episode, first.ticks, first.end_role) == ("c1", "e1", 3, "recovered")
        assert first.first_error == "SchemaViolation" and first.mechanisms == ("schema_repair", "model")
        assert (second.episode, second.ticks, second.end_role, second.first_error) == ("e2", 2, "death", "Timeout")
        step = chains.step(0, 0)
        assert step.line == 2 and step.role == "failure" and step.action is None
        assert step.schema_error == "missing field 'tool'" and step.raw_output == "I think I should read the file"
        assert step.context is not None and step.context[0]["role"] == "system"
        assert step.problems == ()
        assert chains.step(0, 1).recovery == "schema_repair" and chains.step(0, 1).actor == "repair"
        assert chains.step(0, 99).position == 2, "positions are clamped to the chain"
    finally:
        feed.stop()


async def test_step_through_a_chain_and_between_chains(tmp_path: Path) -> None:
    app = chains_app(write_trace(tmp_path / "t.jsonl", sample_records()))
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, ChainsScreen)
        assert await until(pilot, lambda: screen.chain_list.count == 2)
        assert await until(pilot, lambda: "chain c1  tick 1/3" in shown(app))
        text = shown(app)
        assert "episode e1" in text
        assert "context the actor saw · 2 messages" in text and "You are a coding agent" in text
        assert "I think I should read the file" in text
        assert "schema error" in text and "missing field 'tool'" in text and "(no valid action)" in text

        await pilot.press("right")
        text = shown(app)
        assert "tick 2/3" in text and "mechanism schema_repair" in text and "actor repair" in text
        await pilot.press("end")
        assert "tick 3/3" in shown(app) and "role recovered" in shown(app)
        await pilot.press("right")
        assert screen.position == 2, "stepping past the last tick stays on it"
        await pilot.press("home", "left")
        assert screen.position == 0

        await pilot.press("right_square_bracket")
        assert screen.chain == 1 and screen.position == 0
        text = shown(app)
        assert "episode e2" in text and "trap hang" in text and "outcome timeout (Timeout)" in text
        await pilot.press("n")
        assert "role death" in shown(app) and "outcome death (Fatal)" in shown(app)
        await pilot.press("left_square_bracket")
        assert screen.chain == 0 and screen.position == 0
        status = screen.query_one("#chain-status", Static)
        assert "chain 1/2 · tick 1/3" in str(status.content)


async def test_new_chains_appear_while_following(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", many_ticks("e", 10))
    app = chains_app(path, follow=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, ChainsScreen)
        await pilot.pause(0.2)
        assert screen.chain_list.count == 0
        assert "no recovery chains" in shown(app)
        append_records(
            path,
            [
                tick("e", 10, "error", error_class="Timeout", chain_id="k1", chain_role="failure"),
                tick("e", 11, chain_id="k1", chain_role="recovered", recovery="watchdog"),
            ],
        )
        assert await until(pilot, lambda: screen.chain_list.count == 1)
        assert await until(pilot, lambda: "chain k1  tick 1/2" in shown(app))
        row = screen.query_one(ChainList).render_line(0).text
        assert "k1" in row and "recovered" in row and "watchdog" in row
