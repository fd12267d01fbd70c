"""Import throughput per agent format against a bare JSON parse of the same input.

Builds, in a temporary folder, an input of about ``--size-mb`` per format by repeating the test fixtures with fresh
ids (Claude Code session lines, Codex rollout lines, OTLP export requests one per line, Aider sessions, Voyager
events files), then times, best of ``--repeat``. Codex and OTLP are measured twice: on the hand-written fixture and
on the recordings of the real tools (``codex/recorded``: Codex CLI 0.171.0 rollouts; ``otel-genai/recorded``: the
OpenTelemetry GenAI instrumentation's export), whose lines are longer:

* baseline: reading the input and ``orjson.loads`` of every line (JSONL), of every file (Voyager events), or
  splitting it into lines (Aider Markdown, which is not JSON);
* import: ``pipeline.traces.importers.import_trace`` (``voyager.convert_checkpoint`` for the checkpoint), records
  validated against the canonical schema as always.

Prints MB/s for both and their ratio. ``--aider FILE`` times a real Aider history instead of the repeated excerpt.

    python benchmarks/bench_trace_import.py [--size-mb 16] [--repeat 3] [--aider path/to/.aider.chat.history.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
FOREIGN = REPO / "tests" / "fixtures" / "foreign"


def _repeat_jsonl(source: Path, target: Path, size: int, rename: Callable[[str, int], str]) -> None:
    lines = source.read_text().splitlines()
    with open(target, "w") as fh:
        copy = 0
        while fh.tell() < size:
            for line in lines:
                fh.write(rename(line, copy) + "\n")
            copy += 1


_FORMAT_OF = {"codex-recorded": "codex", "otel-recorded": "otel-genai"}  # input name -> format


def _span_list(request: Any) -> list[dict[str, str]]:
    return [span for r in request["resourceSpans"] for s in r["scopeSpans"] for span in s["spans"]]


def _fresh_traces(line: str, traces: list[str], n: int) -> str:
    for trace in traces:
        line = line.replace(trace, f"{n:08x}{trace[8:]}")
    return line


def build(folder: Path, size: int) -> dict[str, Path]:
    inputs: dict[str, Path] = {}
    claude = FOREIGN / "claude-code" / "-home-dev-shop-api" / "7f3c2a91-5d0e-4b7a-9c61-2e8f4d1b6a30.jsonl"
    inputs["claude-code"] = folder / "claude.jsonl"
    _repeat_jsonl(
        claude,
        inputs["claude-code"],
        size,
        lambda line, n: line.replace("toolu_01", f"toolu_{n:06d}").replace("msg_01", f"msg_{n:06d}"),
    )
    codex = next((FOREIGN / "codex" / "sessions").rglob("rollout-*.jsonl"))
    inputs["codex"] = folder / "rollout.jsonl"
    _repeat_jsonl(codex, inputs["codex"], size, lambda line, n: line.replace('"call_', f'"c{n:06d}_'))
    recorded = sorted((FOREIGN / "codex" / "recorded").rglob("rollout-*.jsonl"))[0]  # the session with 9 ticks
    inputs["codex-recorded"] = folder / "rollout-recorded.jsonl"
    _repeat_jsonl(recorded, inputs["codex-recorded"], size, lambda line, n: line.replace('"call_', f'"c{n:06d}_'))
    doc = orjson.loads((FOREIGN / "otel-genai" / "agent-run.otlp.json").read_bytes())
    inputs["otel-genai"] = folder / "spans.jsonl"
    with open(inputs["otel-genai"], "wb") as fh:
        copy = 0
        while fh.tell() < size:
            text = orjson.dumps(doc).decode()
            for trace in ("5b8efff798038103d269b633813fc60c", "0af7651916cd43dd8448eb211c80319c"):
                text = text.replace(trace, f"{copy:08x}{trace[8:]}")
            fh.write(text.encode() + b"\n")
            copy += 1
    exported = (FOREIGN / "otel-genai" / "recorded" / "agent-runs.otlp.jsonl").read_text().splitlines()
    traces = sorted({span["traceId"] for line in exported for span in _span_list(orjson.loads(line))})
    inputs["otel-recorded"] = folder / "spans-recorded.jsonl"
    _repeat_jsonl(
        FOREIGN / "otel-genai" / "recorded" / "agent-runs.otlp.jsonl",
        inputs["otel-recorded"],
        size,
        lambda line, n: _fresh_traces(line, traces, n),
    )
    excerpt = (FOREIGN / "aider" / "chat-history-excerpt.md").read_text()
    inputs["aider"] = folder / ".aider.chat.history.md"
    with open(inputs["aider"], "w") as fh:
        while fh.tell() < size:
            fh.write(excerpt)
    checkpoint = folder / "ckpt"
    shutil.copytree(FOREIGN / "voyager" / "ckpt", checkpoint)
    events = sorted((checkpoint / "events").iterdir())
    total = sum(p.stat().st_size for p in events)
    copy = 0
    while total < size:
        for path in events:
            task, date, clock = path.name.rsplit("_", 2)
            target = checkpoint / "events" / f"{task}_{int(date) + copy + 1}_{clock}"
            shutil.copy(path, target)
            total += path.stat().st_size
        copy += 1
    inputs["voyager"] = checkpoint
    return inputs


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def baseline(fmt: str, path: Path) -> None:
    if fmt == "voyager":
        for events in (path / "events").iterdir():
            orjson.loads(events.read_bytes())
    elif fmt == "aider":
        with open(path, "rb") as fh:
            for _line in fh:
                pass
    else:
        with open(path, "rb") as fh:
            for line in fh:
                orjson.loads(line)


def run_import(fmt: str, path: Path) -> int:
    from pipeline.traces.importers import import_trace, voyager

    if fmt == "voyager":
        records, _ = voyager.convert_checkpoint(path)
    else:
        records, _ = import_trace(path, _FORMAT_OF.get(fmt, fmt))
    return len(records)


def _best(repeat: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mb", type=float, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--aider", type=Path, help="a real .aider.chat.history.md to time instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        inputs = build(Path(name), int(args.size_mb * 2**20))
        if args.aider is not None:
            inputs["aider"] = args.aider
        rows = []
        for fmt, path in inputs.items():
            size = _size(path) / 1e6
            base = _best(args.repeat, lambda: baseline(fmt, path))  # noqa: B023
            imp = _best(args.repeat, lambda: run_import(fmt, path))  # noqa: B023
            records = run_import(fmt, path)
            rows.append((fmt, size, size / base, size / imp, imp / base, records))
    print(f"{'format':<14} {'MB':>7} {'parse MB/s':>11} {'import MB/s':>12} {'ratio':>6} {'records':>9}")
    for fmt, size, base_rate, import_rate, ratio, records in rows:
        print(f"{fmt:<14} {size:>7.1f} {base_rate:>11.1f} {import_rate:>12.1f} {ratio:>5.1f}x {records:>9}")
    print(json.dumps({r[0]: {"mb": round(r[1], 1), "parse_mb_s": round(r[2], 1), "import_mb_s": round(r[3], 1)}
                      for r in rows}))  # fmt: skip


if __name__ == "__main__":
    main()
