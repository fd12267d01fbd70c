"""The trace viewer's start-up stays lean: what its first screen does not need is not imported, the CSS is parsed
once, and the garbage collector waits for the first frame. (Each of these cost a part of the time to the first
screen; see docs/performance.md, fourth round.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.css import stylesheet as textual_stylesheet

from phasef_tui.trace_view import prepare_trace_view
from tests.tui_helpers import plain_text, read_pty, sample_records, start_in_pty, until, write_trace
from widgets.trace_stream import TraceStream

REPO = Path(__file__).resolve().parents[1]

NOT_AT_START = (
    # the other screens: imported when the operator goes to them
    "phasef_tui.screens.audit",
    "phasef_tui.screens.chains",
    "phasef_tui.screens.compare",
    "phasef_tui.screens.dashboard",
    "phasef_tui.screens.help",
    "phasef_tui.screens.report",
    "phasef_tui.screens.sessions",
    "phasef_tui.sessions_source",
    # widgets of those screens and of a session (the ``widgets`` package re-exports them on first use)
    "widgets.chain_list",
    "widgets.chain_stepper",
    "widgets.delta_table",
    "widgets.headline",
    "widgets.log_tail",
    "widgets.plots",
    "widgets.session_view",
    "widgets.stage_board",
    "widgets.verdict_card",
    "textual_plotext",
    # the Traces screen's detail pane: mounted, and its module imported, when first opened
    "widgets.record_detail",
    "widgets.text_pane",
    "rich.json",
    "textual.widgets._data_table",
    # Textual's widgets that only ``textual.types`` names (``phasef_tui.textual_types`` defers them)
    "textual.widgets._directory_tree",
    "textual.widgets._tree",
    "textual.widgets._select",
    "textual.widgets._placeholder",
    # models and engines the viewer does not need to draw a trace
    "pydantic",
    "pipeline.config",
    "pipeline.traces.schema",
    "pipeline.traces.analyzer",
    "mlx",
    # numpy (~50 ms): the summary's bulk paths (a worker's batches, long chains) import it, not the first lines
    "numpy",
    # TLS: asyncio imports ssl only to offer it; the viewer opens no connection (trace_view.import_asyncio_without_tls)
    "ssl",
    "_ssl",
)

PROBE = """
import gc, sys
from pathlib import Path
from phasef_tui.trace_view import prepare_trace_view

view = prepare_trace_view(Path(sys.argv[1]), False)  # (first, as in the CLI: it imports asyncio)
import asyncio
from widgets.trace_stream import TraceStream

async def main() -> None:
    async with view.app.run_test(size=(120, 40)) as pilot:
        stream = view.app.screen.query_one(TraceStream)
        for _ in range(250):
            if stream.count:
                break
            await pilot.pause(0.02)
        print("rows", stream.count)
        print("\\n".join(sorted(sys.modules)))
    view.close()

asyncio.run(main())
"""


def test_the_first_screen_imports_nothing_it_does_not_show(tmp_path: Path) -> None:
    """A fresh interpreter opens a trace up to its first screen of rows; the modules of the other screens, of a
    session's widgets, of the config model and of the analysis are not imported by then."""
    trace = write_trace(tmp_path / "t.jsonl", sample_records())
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(trace)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "rows 15", out.stdout[:200] + out.stderr
    loaded = set(lines[1:])
    assert {"phasef_tui.screens.traces", "widgets.trace_stream", "widgets.filter_bar"} <= loaded
    early = sorted(m for m in loaded for lazy in NOT_AT_START if m == lazy or m.startswith(lazy + "."))
    assert early == [], f"imported before the first screen: {early}"


NO_TLS_PROBE = """
import sys
if sys.argv[1] == "asyncio-first":
    import asyncio
from phasef_tui.trace_view import import_asyncio_without_tls

import_asyncio_without_tls()
import asyncio.base_events, asyncio.selector_events, asyncio.sslproto
print(sorted(m for m in sys.modules if m in ("ssl", "_ssl")))
print([getattr(m, "ssl") is None for m in (asyncio.base_events, asyncio.selector_events, asyncio.sslproto)])
import ssl  # (on its own it imports as ever)
print(ssl.create_default_context().verify_mode == ssl.CERT_REQUIRED)
"""


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("fresh", "[]\n[True, True, True]\nTrue\n"),
        ("asyncio-first", "['_ssl', 'ssl']\n[False, False, False]\nTrue\n"),  # too late: left as it is
    ],
)
def test_the_viewer_imports_asyncio_without_tls_and_ssl_still_imports(order: str, expected: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", NO_TLS_PROBE, order], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected


CLI_PROBE = """
import sys
import phasef_tui.trace_view as trace_view
from phasef_tui.cli import main

def stop_at_the_viewer(path, follow, fmt=None):  # what the CLI imported on its way to the viewer
    print("\\n".join(sorted(sys.modules)))
    return 0

trace_view.run_trace_view = stop_at_the_viewer
sys.exit(main(["trace", "view", sys.argv[1]]))
"""
CLI_NOT_ON_THE_WAY = ("pipeline.traces.importers", "pydantic", "importlib.metadata")
"""~0.15 s of imports that ``phasef trace view`` paid before its first screen: the importers (to check a ``--from``
that was not given) and the package's version (for ``--version``, asked or not)."""


def test_the_cli_s_way_to_the_viewer_imports_no_importer_and_no_version(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", sample_records())
    out = subprocess.run(
        [sys.executable, "-c", CLI_PROBE, str(trace)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split("\n"))
    assert "phasef_tui.commands.trace" in loaded
    early = sorted(m for m in loaded for lazy in CLI_NOT_ON_THE_WAY if m == lazy or m.startswith(lazy + "."))
    assert early == [], f"imported by the CLI before the viewer: {early}"


def test_the_widgets_and_screens_packages_still_export_every_name() -> None:
    """Lazy re-exports: every name in ``__all__`` resolves, to the class its module defines."""
    code = (
        "import widgets, phasef_tui.screens as s\n"
        "from widgets.trace_stream import TraceStream\n"
        "from phasef_tui.screens.report import ReportScreen\n"
        "assert widgets.TraceStream is TraceStream and s.ReportScreen is ReportScreen\n"
        "for n in widgets.__all__: getattr(widgets, n)\n"
        "for n in s.__all__: getattr(s, n)\n"
        "try:\n    widgets.NoSuchWidget\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "NoSuchWidget" in out.stdout


async def test_the_css_is_parsed_once_until_the_theme_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[Any] = []
    real_parse = textual_stylesheet.parse

    def counting_parse(scope: str, css: str, read_from: Any, *args: Any, **kwargs: Any) -> Any:
        # (a source registered again by a deeper widget class gets a lower tie-breaker: that is another parse)
        parsed.append((read_from, scope, kwargs.get("tie_breaker")))
        return real_parse(scope, css, read_from, *args, **kwargs)

    monkeypatch.setattr(textual_stylesheet, "parse", counting_parse)
    view = prepare_trace_view(write_trace(tmp_path / "t.jsonl", sample_records()), False)
    assert not isinstance(view, str)
    app = view.app
    async with app.run_test(size=(120, 40)) as pilot:
        stream = app.screen.query_one(TraceStream)
        assert await until(pilot, lambda: stream.count == 15)
        twice = sorted({str(r) for r in parsed if parsed.count(r) > 1})
        assert parsed and twice == [], f"parsed more than once with the same theme: {twice}"
        sources = len(app.stylesheet.source)
        background = stream.styles.background
        parsed.clear()
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await pilot.pause(0.1)
        assert len(parsed) == sources  # other variables: every source parsed again, once
        assert stream.styles.background != background  # and the new theme's colours are applied
    view.close()


async def test_the_collector_is_off_until_the_first_frame(tmp_path: Path) -> None:
    """``run_trace_view`` turns the collector off for the start-up; the app turns it on after its first frame (and
    an app nobody asked to do so leaves it as it is)."""
    import gc

    view = prepare_trace_view(write_trace(tmp_path / "t.jsonl", sample_records()), False)
    assert not isinstance(view, str)
    view.app.collect_after_first_frame = True
    gc.disable()
    try:
        async with view.app.run_test(size=(120, 40)) as pilot:
            stream = view.app.screen.query_one(TraceStream)
            assert await until(pilot, lambda: stream.count == 15)
            assert await until(pilot, lambda: gc.isenabled())
    finally:
        gc.enable()
        view.close()
    other = prepare_trace_view(write_trace(tmp_path / "u.jsonl", sample_records()), False)
    assert not isinstance(other, str)
    gc.disable()
    try:
        async with other.app.run_test(size=(120, 40)) as pilot:
            assert await until(pilot, lambda: other.app.screen.query_one(TraceStream).count == 15)
            await pilot.pause(0.1)
            assert not gc.isenabled()
    finally:
        gc.enable()
        other.close()


async def test_no_frame_is_rendered_while_the_app_holds_updates_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Textual renders a screen refreshed inside ``batch_update`` (its start-up) and then drops the frame unshown:
    a whole-screen render before the first frame. Phasef's screens draw only once updates go; the frame still
    comes, with the records."""
    from textual._compositor import Compositor

    renders: list[int] = []  # the app's batch depth at each render
    real = Compositor.render_update

    def render_update(self: Compositor, *args: Any, **kwargs: Any) -> Any:
        renders.append(app._batch_count)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Compositor, "render_update", render_update)
    view = prepare_trace_view(write_trace(tmp_path / "t.jsonl", sample_records()), False)
    assert not isinstance(view, str)
    app = view.app
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            stream = app.screen.query_one(TraceStream)
            assert await until(pilot, lambda: stream.count == 15 and bool(renders))
            await pilot.pause(0.1)
            assert renders and not any(renders), f"renders inside a batch: {renders}"
    finally:
        view.close()


async def test_another_screen_s_css_is_read_when_that_screen_is_first_shown(tmp_path: Path) -> None:
    view = prepare_trace_view(write_trace(tmp_path / "t.jsonl", sample_records()), False)
    assert not isinstance(view, str)
    app = view.app

    def sheets() -> set[str]:
        return {Path(path).name for path, _ in app.stylesheet.source if path.endswith(".tcss")}

    async with app.run_test(size=(120, 40)) as pilot:
        assert await until(pilot, lambda: app.screen.query_one(TraceStream).count == 15)
        assert sheets() == {"phasef.tcss"}
        await pilot.press("3")  # the Chains screen
        assert await until(pilot, lambda: type(app.screen).__name__ == "ChainsScreen")
        await pilot.pause(0.1)
        assert sheets() == {"phasef.tcss", "chains.tcss"}
        stepper = app.screen.query_one("#stepper")
        assert stepper.styles.padding.left == 1  # (a rule of chains.tcss applies)
        await pilot.press("question_mark")  # the help screen: the dialogs' rules are read now
        assert await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        await pilot.pause(0.1)
        assert sheets() == {"phasef.tcss", "chains.tcss", "dialogs.tcss"}
        assert app.screen.query_one("#help-body").styles.border.top[0] == "round"  # (a rule of dialogs.tcss)
    view.close()


def test_a_foreign_trace_is_converted_with_the_collector_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector is off for the viewer's start-up, but not while a foreign trace (maybe big) is converted."""
    import gc

    from pipeline.traces.importers import cache

    seen: list[bool] = []

    def import_cached(path: Path, fmt: str | None = None) -> Any:
        seen.append(gc.isenabled())
        raise ValueError(f"{path}: not converted here")

    monkeypatch.setattr(cache, "import_cached", import_cached)
    gc.disable()
    try:
        assert str(prepare_trace_view(tmp_path, False)).endswith("not converted here")  # a folder is imported
        assert seen == [True] and not gc.isenabled()  # on for the conversion, off again after it
    finally:
        gc.enable()


FIRST_FRAME = """
import os, sys
from pathlib import Path
import textual.drivers.linux_driver as linux_driver

real_write = linux_driver.LinuxDriver.write

def write(self, data):
    real_write(self, data)
    if "\\x1b[1;1H" in data:  # the first frame: the whole screen, drawn from its top left corner
        Path(sys.argv[2]).write_text(data)
        os._exit(0)

linux_driver.LinuxDriver.write = write
from phasef_tui.trace_view import run_trace_view
run_trace_view(Path(sys.argv[1]), False)
"""


def screen_rows(frame: str) -> dict[int, str]:
    """The text of each row a frame writes (cursor moves ``ESC[row;colH`` followed by text and colour codes)."""
    rows: dict[int, str] = {}
    for move in re.finditer(r"\x1b\[(\d+);\d+H((?:[^\x1b]|\x1b\[[0-9;]*m)*)", frame):
        row = int(move.group(1))
        rows[row] = rows.get(row, "") + re.sub(r"\x1b\[[0-9;]*m", "", move.group(2))
    return rows


def test_the_first_frame_is_the_complete_viewer(tmp_path: Path) -> None:
    """The real viewer in a 120x40 pty: its first frame written to the terminal already has the tab line, the filter
    line with its counts, the records, the status line and the key hints (nothing filled in a frame later)."""
    trace = write_trace(tmp_path / "t.jsonl", sample_records())
    frame_file = tmp_path / "frame.txt"
    proc, master = start_in_pty(["-c", FIRST_FRAME, str(trace), str(frame_file)], tmp_path)
    read_pty(proc, master)  # (until the viewer leaves, right after its first frame)
    rows = screen_rows(frame_file.read_text())
    assert rows[1].split() == ["2", "Traces", "3", "Chains", "5", "Report", str(trace)]
    assert rows[2].split()[:4] == ["death", "2", "recovery", "2"]
    assert rows[3].split()[:3] == ["1", "······", "e1"] and "episode start" in rows[3]
    assert rows[17].split()[:3] == ["15", "D·····", "e2"] and "episode end death" in rows[17]
    assert rows[39].startswith("paused 1/15") and str(trace) in rows[39]
    assert rows[40].startswith("f Follow  v Detail  / Search") and rows[40].rstrip().endswith("q Quit")


async def test_the_detail_pane_and_the_search_line_are_mounted_when_first_opened(tmp_path: Path) -> None:
    """The first screen has neither (fewer widgets and rules before the first frame); ``v`` and ``/`` mount them
    once, and they work as if they had always been there."""
    from textual.widgets import Input, Static

    trace = write_trace(tmp_path / "t.jsonl", sample_records())
    view = prepare_trace_view(trace, False)
    assert not isinstance(view, str)
    app = view.app
    async with app.run_test(size=(120, 40)) as pilot:
        traces = app.screen
        stream = traces.query_one(TraceStream)
        assert await until(pilot, lambda: stream.count == 15)
        assert not traces.query("#detail") and not traces.query("#search")
        assert traces.has_class("-wide")  # (the width class, set before the first frame)

        await pilot.press("down", "v")
        assert await until(pilot, lambda: bool(traces.query("#record-detail-body")))
        body = traces.query_one("#record-detail-body", Static)
        assert await until(pilot, lambda: f"{trace}:2" in plain_text(body.content, 200))
        assert '"tick": 0' in plain_text(body.content, 200)
        detail = traces.query_one("#detail")
        assert detail.region.width > 0 and detail.region.x > stream.region.x  # beside the stream (wide terminal)
        await pilot.press("escape", "down", "v")
        assert len(traces.query("#detail")) == 1 and traces.query_one("#detail") is detail
        assert await until(pilot, lambda: f"{trace}:3" in plain_text(body.content, 200))
        await pilot.press("escape")

        await pilot.press("home", "slash", *"deadlock", "enter")
        assert await until(pilot, lambda: stream.cursor == 8)
        search = traces.query_one("#search", Input)
        assert not search.has_class("-open") and app.focused is stream
        await pilot.press("slash")
        assert await until(pilot, lambda: app.focused is search)
        assert search.value == "deadlock" and search.has_class("-open") and len(traces.query("#search")) == 1
        await pilot.press("escape")
        assert not search.has_class("-open") and app.focused is stream
    view.close()


def test_the_tui_section_is_read_once_for_keys_and_theme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from phasef_tui.app import load_tui_settings
    from pipeline import config_section

    config = tmp_path / "config.toml"
    config.write_text('[tui]\ntheme = "textual-light"\n\n[tui.keys]\n"traces.follow" = "F"\n"no.such" = "x"\n')
    reads: list[Path] = []
    real_read = config_section.read_tui

    def counting_read(path: Path, *args: Any, **kwargs: Any) -> Any:
        reads.append(path)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(config_section, "read_tui", counting_read)
    settings = load_tui_settings(config)
    assert reads == [config]
    assert settings["keymap"] == {"traces.follow": "F"} and settings["theme"] == "textual-light"
    assert [p.field for p in settings["keymap_problems"]] == ["tui.keys.no.such"]
    assert settings["theme_source"] == f"{config}:2: tui.theme"


DEFERRED_TYPES = """
import sys
from phasef_tui import textual_types

assert textual_types.defer_widget_types()
assert not textual_types.defer_widget_types()  # (once)
import textual.app
import textual.types as deferred

widgets = ("textual.widgets._directory_tree", "textual.widgets._select", "textual.widgets._placeholder")
print("before", sorted(m for m in widgets if m in sys.modules))
real = textual_types._real_module()
assert sorted(deferred.__all__) == sorted(real.__all__), (deferred.__all__, real.__all__)
for name in real.__all__:
    assert getattr(deferred, name) is getattr(real, name), name
print("after", sorted(m for m in widgets if m in sys.modules))
try:
    deferred.NoSuchName
except AttributeError as exc:
    print("missing", exc)
"""


def test_textual_types_imports_the_widget_modules_on_first_use() -> None:
    """The deferred ``textual.types`` has every name of Textual's own, the same objects; the widget modules are
    imported when one of their names is read, not with ``textual.app``."""
    out = subprocess.run([sys.executable, "-c", DEFERRED_TYPES], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "before []"
    assert (
        lines[1]
        == "after ['textual.widgets._directory_tree', 'textual.widgets._placeholder', 'textual.widgets._select']"
    )
    assert lines[2].startswith("missing") and "NoSuchName" in lines[2]
