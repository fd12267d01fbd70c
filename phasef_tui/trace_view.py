"""``phasef trace view FILE|DIR [--follow]``: the Traces, Chains and Report screens on a trace, no session needed.

Canonical JSONL is opened in place and indexed lazily (a gigabyte shows its first screen at once). Other agents'
formats, and whole run folders, are imported by ``pipeline.traces.importers`` into a canonical file kept in the
import cache (by content hash, see ``importers.cache``); the lines that could not be used are listed (file, line,
reason) and the rest is shown.
"""

from __future__ import annotations

import gc
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from phasef_tui.app import PhasefApp

CANONICAL_KINDS = (b'"episode_start"', b'"tick"', b'"episode_end"')
PROBLEMS_NOTIFIED = 5
PROBLEMS_PRINTED = 20
KEYS_CONFIG = "config.toml"
"""The keymap of a trace view comes from ``[tui.keys]`` of ./config.toml (or $PHASEF_CONFIG) when there is one."""


def is_canonical_jsonl(path: Path) -> bool:
    """Cheap check of the first line, so canonical files skip the format detection (and its imports)."""
    from pipeline.fsio import open_regular

    try:
        with open_regular(path) as fh:
            first = fh.readline(1 << 16)
    except OSError:
        return False
    if b'"kind"' not in first or b'"episode"' not in first:
        return False
    try:
        obj = orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("kind") in ("episode_start", "tick", "episode_end")


@dataclass
class TraceView:
    """A viewer ready to run: the app, what could not be imported, and the temporary file to remove afterwards."""

    app: PhasefApp
    problems: list[str] = field(default_factory=list)
    temporary: Path | None = None

    def close(self) -> None:
        if self.temporary is not None:
            self.temporary.unlink(missing_ok=True)


def import_asyncio_without_tls() -> None:
    """Import asyncio (Textual's loop) without ``ssl``: asyncio imports it only to offer TLS connections, which the
    viewer never opens, and ``ssl`` with OpenSSL and its generated enums took 13-28 ms of a bare ``import asyncio``.
    asyncio keeps ``ssl = None`` (a TLS connection asked of this process's asyncio would say ssl is unavailable);
    ``import ssl`` itself works as before. Nothing is done when asyncio or ssl is imported already."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # (import ssl: ImportError, which asyncio allows for)
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


def prepare_trace_view(path: Path, follow: bool, fmt: str | None = None) -> TraceView | str:
    """The viewer for ``path``, or an error message (missing file, a directory, a format no importer knows)."""
    from phasef_tui.textual_types import defer_widget_types

    import_asyncio_without_tls()
    defer_widget_types()  # (before Textual's app module: it would import widgets the viewer does not show)
    from phasef_tui.app import PhasefApp, load_tui_settings
    from phasef_tui.data_source import TraceFileSource
    from phasef_tui.trace_feed import TraceFeed
    from pipeline.fsio import NotARegularFile, check_regular_file

    path = Path(path)
    if not path.exists():
        return f"{path}: no such file"
    if not path.is_dir():  # a run folder is imported; anything else must be a regular file
        try:
            check_regular_file(path)  # a FIFO without a writer would block the viewer before its first screen
        except NotARegularFile as exc:
            return str(exc)
    temporary: Path | None = None
    problems: list[str] = []
    shown, display = path, str(path)
    if path.is_dir() or (fmt not in (None, "phasef")) or (path.stat().st_size and not is_canonical_jsonl(path)):
        from pipeline.traces.importers import UnknownFormat, detect_format
        from pipeline.traces.importers.cache import import_cached

        forced = fmt
        try:
            fmt = "folder" if path.is_dir() else (fmt or detect_format(path))
        except (OSError, UnknownFormat) as exc:
            return str(exc)
        if fmt != "phasef":
            if follow:
                problems.append(f"{path}: --follow needs canonical JSONL; this {fmt} is shown as it is now")
                follow = False
            collecting = gc.isenabled()
            gc.enable()  # (off for the viewer's start-up: a conversion of a big file collects as usual)
            try:
                # imported once into the cache (by content hash); opening it again is immediate
                imported = import_cached(path, forced)
            except (OSError, ValueError) as exc:
                return str(exc)
            finally:
                if not collecting:
                    gc.disable()
            problems.extend(str(b) for b in imported.problems)
            shown, display = imported.file, f"{path} ({imported.format})"
    try:
        feed = TraceFeed(shown, follow=follow, display_name=display)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    feed.problems = problems
    config = Path(os.environ.get("PHASEF_CONFIG") or KEYS_CONFIG)
    app = PhasefApp(TraceFileSource(feed), **load_tui_settings(config if config.exists() else None))
    for problem in problems[:PROBLEMS_NOTIFIED]:
        app.notify_on_start(problem)
    return TraceView(app, problems, temporary)


def run_trace_view(path: Path, follow: bool, fmt: str | None = None) -> int:
    """Run the viewer; returns the exit code (2 when the file cannot be opened or is of no known format).

    The cyclic garbage collector is off until the first frame is drawn: importing Textual and the app allocates
    tens of thousands of long-lived objects, and the collections they set off (some 80, every one over a heap that
    only grows) were a tenth of the time to the first frame. The app collects once, freezes what it built and turns
    the collector back on right after its first frame (``PhasefApp._settle_heap``)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        view = prepare_trace_view(path, follow, fmt)
        if isinstance(view, str):
            print(f"phasef trace view: {view}", file=sys.stderr)
            return 2
        view.app.collect_after_first_frame = collecting
        try:
            view.app.run()
        finally:
            view.close()
    finally:
        if collecting:
            gc.enable()
    for problem in view.problems[:PROBLEMS_PRINTED]:
        print(f"phasef trace view: {problem}", file=sys.stderr)
    if len(view.problems) > PROBLEMS_PRINTED:
        print(f"phasef trace view: … {len(view.problems) - PROBLEMS_PRINTED} more unusable lines", file=sys.stderr)
    return 0


def main() -> int:
    """``python -m phasef_tui.trace_view FILE [--follow]`` (what the benchmarks run)."""
    args = [a for a in sys.argv[1:] if a != "--follow"]
    if len(args) != 1:
        print("usage: python -m phasef_tui.trace_view FILE [--follow]", file=sys.stderr)
        return 2
    return run_trace_view(Path(args[0]), "--follow" in sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
