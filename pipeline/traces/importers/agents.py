"""The importers of agents' own session files (Claude Code, Codex CLI, Aider, Voyager, OpenTelemetry GenAI), and
how the package's detection and conversion reach them.

``sniff_head`` looks only at the bounded prefix ``detect_format`` already read (its first lines, decoded);
``DOCUMENT_SNIFFERS`` are asked about whole JSON documents after the older formats; ``convert`` streams line-based
files and loads documents through the caller's loader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.fsio import open_regular
from pipeline.traces.importers import aider, claude_code, codex, otel_genai, voyager
from pipeline.traces.importers._common import Origin
from pipeline.traces.reader import BadLine

FORMATS: tuple[str, ...] = (claude_code.FORMAT, codex.FORMAT, aider.FORMAT, voyager.FORMAT, otel_genai.FORMAT)

_LINE_SNIFFERS: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    (claude_code.FORMAT, claude_code.sniff_line),
    (codex.FORMAT, codex.sniff_line),
    (otel_genai.FORMAT, otel_genai.sniff_line),
)
DOCUMENT_SNIFFERS: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    (otel_genai.FORMAT, otel_genai.sniff),
    (voyager.FORMAT, voyager.sniff),
)

Result = tuple[list[dict[str, Any]], list[BadLine]]

# What detection looks for, per format: said back to the user when a file is none of them.
EXPECTED: dict[str, str] = {
    "phasef": "JSONL lines with 'kind' and 'episode'",
    "swe-agent": "an object with a 'trajectory' list and 'info' or 'history'",
    "openhands": "a list of events with 'action'/'observation', or records with a 'history' list",
    "mini-swe-agent": "a list of {role, content} messages, or {'messages', 'info'}",
    "tau-bench": "results with a 'traj' list and a 'reward'",
    "inspect-ai": "an EvalLog object with 'eval' and 'version', or a .eval ZIP",
    "claude-code": "JSONL lines with 'type' user/assistant/system and 'sessionId'",
    "codex": "JSONL lines {timestamp, type: session_meta|turn_context|response_item|event_msg, payload}",
    "aider": "Markdown with a '# aider chat started at' line",
    "voyager": "a list of [event_type, event] pairs (one events/ file), or a checkpoint folder",
    "otel-genai": "an OTLP JSON object with a 'resourceSpans' list (one per file or per line)",
}


def tried(formats: tuple[str, ...]) -> str:
    """The formats detection tried, each with what it looked for."""
    return "tried: " + "; ".join(f"{name} ({EXPECTED.get(name, '?')})" for name in formats)


# The trap a failure of these classes ran into (the canonical trap kinds): what the environment did, as opposed to
# what the agent got wrong. Other classes touch no trap.
TRAPS: dict[str, str] = {
    "Timeout": "hang",
    "ContextOverflow": "context_bomb",
    "ConnectionError": "flaky",
    "RateLimitError": "flaky",
    "APITimeoutError": "flaky",
}


def mark_traps(records: list[dict[str, Any]]) -> None:
    """Set ``trap`` on failing ticks whose class names one (see ``TRAPS``), and ``fatal`` on a death's last tick."""
    last_tick: dict[tuple[Any, Any], dict[str, Any]] = {}
    for record in records:
        kind = record.get("kind")
        key = (record.get("run_id"), record.get("episode"))
        if kind == "tick":
            last_tick[key] = record
            trap = TRAPS.get(str(record.get("error_class")))
            if trap is not None and record.get("trap") is None:
                record["trap"] = trap
        elif kind == "episode_end" and record.get("outcome") == "death" and key in last_tick:
            tick = last_tick[key]
            if tick.get("error_class") is not None and tick.get("trap") is None:
                tick["trap"] = "fatal"


def sniff_head(head: bytes, objects: list[dict[str, Any]]) -> str | None:
    """The format of a file from its first bytes and the JSON objects among its first lines, if one of these."""
    for obj in objects:
        for name, sniff in _LINE_SNIFFERS:
            if sniff(obj):
                return name
    if not objects and aider.sniff_text(head):
        return aider.FORMAT
    start = head[:512].lstrip()
    if start.startswith(b"{") and start[1:].lstrip().startswith(b'"resourceSpans"'):
        return otel_genai.FORMAT  # an OTLP document spread over many lines (the exporter's own output)
    return None


def _is_jsonl(path: Path) -> bool:
    if path.suffix == ".jsonl":
        return True
    with open_regular(path) as fh:
        head = fh.read(1 << 16)
    lines = [line for line in head.split(b"\n") if line.strip()]
    return len(lines) > 1 and lines[0].lstrip().startswith(b"{") and lines[0].rstrip().endswith(b"}")


def convert(path: Path, fmt: str, origin: Origin, load_document: Callable[[Path], Any]) -> Result:
    """Convert ``path`` known to be in ``fmt`` (one of ``FORMATS``); documents are read with ``load_document``."""
    records, bad = _convert(path, fmt, origin, load_document)
    mark_traps(records)
    return records, bad


def _convert(path: Path, fmt: str, origin: Origin, load_document: Callable[[Path], Any]) -> Result:
    if fmt == claude_code.FORMAT:
        return claude_code.convert_path(path, origin)
    if fmt == codex.FORMAT:
        return codex.convert_path(path, origin)
    if fmt == aider.FORMAT:
        return aider.convert_path(path, origin)
    if fmt == otel_genai.FORMAT:
        if _is_jsonl(path):
            return otel_genai.convert_jsonl(path, origin)
        doc = load_document(path)
        if not otel_genai.sniff(doc):
            from pipeline.traces.importers import UnknownFormat

            raise UnknownFormat(f"{path}: not an otel-genai file (expected {EXPECTED['otel-genai']})")
        return otel_genai.convert(path, doc, origin)
    if fmt == voyager.FORMAT:
        doc = load_document(path)
        return voyager.convert(path, doc, origin)
    raise ValueError(f"unknown format {fmt!r}")
