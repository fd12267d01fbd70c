"""Keys: every binding has an id, ``[tui.keys]`` remaps them (bad entries named by file and line), the help screen
lists every key and the command palette offers the same actions."""

from __future__ import annotations

from pathlib import Path

from textual.command import CommandPalette

from phasef_tui.app import PhasefApp
from phasef_tui.data_source import TraceFileSource
from phasef_tui.keys import SCREEN_KEYS, all_actions, keymap_from_config, known_ids, load_keymap
from phasef_tui.screens.help import HelpScreen, render_help
from phasef_tui.trace_feed import TraceFeed
from tests.tui_helpers import plain_text, sample_records, until, write_trace
from widgets.trace_stream import TraceStream


def test_every_key_has_a_unique_id() -> None:
    ids = [a.id for _, a in all_actions()]
    assert all(ids) and len(ids) == len(set(ids))
    assert {"traces.follow", "chains.next_tick", "audit.approve", "audit.reject", "app.help", "list.up"} <= set(ids)


def test_load_keymap_keeps_good_entries_and_names_bad_ones(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[project]\nname = 'x'\n\n[tui.keys]\n"
        '"traces.follow" = "F"\n'
        '"traces.nope" = "x"\n'
        '"audit.approve" = 3\n'
        '"chains.next_tick" = "right, l"\n',
        encoding="utf-8",
    )
    keymap, problems = keymap_from_config(config)
    assert keymap == {"traces.follow": "F", "chains.next_tick": "right,l"}
    assert [str(p) for p in problems] == [
        f"{config}:6: tui.keys.traces.nope: unknown binding id (see the help screen, '?', for every id)",
        f'{config}:7: tui.keys.audit.approve: expected a key such as "ctrl+f" or "F", got 3',
    ]
    assert keymap_from_config(tmp_path / "missing.toml") == ({}, [])
    _, problems = load_keymap({"keys": ["not", "a", "table"]})
    assert problems and "must be a table" in str(problems[0])


def test_help_lists_every_id_and_shows_remapped_keys() -> None:
    text = plain_text(render_help({"traces.follow": "F"}), 200)
    for binding_id in known_ids():
        assert binding_id in text
    follow_line = next(line for line in text.splitlines() if "traces.follow" in line)
    assert follow_line.split()[0] == "F"


async def test_remapped_key_drives_the_action(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records())
    app = PhasefApp(TraceFileSource(TraceFeed(path, follow=True)), keymap={"traces.follow": "F"}, blink=False)
    async with app.run_test(size=(100, 30)) as pilot:
        stream = app.screen.query_one(TraceStream)
        assert await until(pilot, lambda: stream.count == 15)
        assert stream.follow
        await pilot.press("f")
        assert stream.follow, "the default key is replaced, not added to"
        await pilot.press("F")
        assert not stream.follow
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_palette_offers_the_screen_actions(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", sample_records())
    app = PhasefApp(TraceFileSource(TraceFeed(path, follow=False)), blink=False)
    async with app.run_test(size=(100, 30)) as pilot:
        stream = app.screen.query_one(TraceStream)
        assert await until(pilot, lambda: stream.count == 15)
        await pilot.press("ctrl+p")
        assert await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"filter deaths")
        await pilot.pause(0.5)
        await pilot.press("enter")
        assert await until(pilot, lambda: not isinstance(app.screen, CommandPalette))
        traces = app.screen
        assert await until(pilot, lambda: getattr(traces, "kinds", None) == frozenset({"death"}))
        await pilot.press("ctrl+p", *"go to recovery chains")
        await pilot.pause(0.5)
        await pilot.press("enter")
        assert await until(pilot, lambda: type(app.screen).__name__ == "ChainsScreen")


def test_palette_titles_cover_the_screen_keys() -> None:
    descriptions = {a.description for a in SCREEN_KEYS["traces"]}
    assert {"Follow", "Search", "Filter deaths", "Its chain"} <= descriptions
