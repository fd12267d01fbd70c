"""Follow a trace that grows by 10,000 records a second: do keys still answer fast, and does the view keep up?

The viewer (``python -m phasef_tui.trace_view FILE --follow``) runs in a 120x40 pty. A separate process appends
records at the given rate (batches every 10 ms); every record's episode id carries its sequence number, so the
screen says which record it shows and when. Measured, in the same run:

* key-to-screen latency: ``?`` until the help screen is drawn, ``?`` again until the stream is back; first on the
  idle viewer (the baseline), then under the append load;
* display lag under load: for each newest record seen on screen, how long ago it was written and how many records
  were written after it;
* CPU used by the viewer under load.

    python benchmarks/bench_tui_follow.py --rate 10000 --seconds 20      # target: keys < 100 ms under load
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tui_terminal import Terminal, summary
from bench_tui_tracegen import generate

VIEWER = [sys.executable, "-m", "phasef_tui.trace_view"]
BATCH_S = 0.01
SEQ = re.compile(rb"L(\d{8})")
HELP_MARKER = b"binding id"
STREAM_MARKER = b"FOLLOW "
DETAIL_MARKER = b"phasef.dirty_trace/1"
"""The schema value of the record under the cursor, shown only in the detail pane."""
ROW_MARKER = re.compile(rb"ep-\d{7}|L\d{8}")
"""A stream row (an episode id of the generated trace or of an appended record): drawn where the help was."""


def record(seq: int, ts: float) -> bytes:
    """A tick of about the size of the generated trace's, its episode id carrying ``seq``."""
    return (
        orjson.dumps(
            {
                "schema": "phasef.dirty_trace/1",
                "kind": "tick",
                "run_id": "live",
                "episode": f"L{seq:08d}",
                "ts": ts,
                "tick": seq % 50,
                "actor": "model",
                "latency_s": 0.4,
                "prompt_tokens": 900,
                "completion_tokens": 40,
                "context_chars": 4000 + seq % 1000,
                "raw_output": '{"tool": "read_file", "args": {"path": "src/mod.py"}}',
                "action": {"tool": "read_file", "args": {"path": "src/mod.py"}},
                "outcome": "error" if seq % 17 == 0 else "ok",
                "error_class": "CheckFailed" if seq % 17 == 0 else None,
                "observation": "ok: " + "x" * 120,
                "progress": seq % 3 == 0,
            }
        )
        + b"\n"
    )


def append(path: str, rate: int, seconds: float, start_at: float, log: mp.Queue) -> None:  # type: ignore[type-arg]
    """Append ``rate`` records/s for ``seconds``; report (last seq written, monotonic time) per batch."""
    per_batch = max(1, int(rate * BATCH_S))
    seq = 0
    written: list[tuple[int, float]] = []
    while time.monotonic() < start_at:
        time.sleep(0.001)
    with open(path, "ab", buffering=0) as out:
        t0 = time.monotonic()
        batch = 0
        while time.monotonic() - t0 < seconds:
            data = b"".join(record(seq + i, time.time()) for i in range(per_batch))
            out.write(data)
            seq += per_batch
            written.append((seq - 1, time.monotonic()))
            batch += 1
            delay = t0 + batch * BATCH_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - t0
    log.put((written, seq / elapsed))


KEY_ROUND_TRIPS = (
    # (name, key that opens, what it draws, key that closes, what is drawn back)
    ("help screen", b"?", HELP_MARKER, b"?", ROW_MARKER),
    ("detail pane", b"v", DETAIL_MARKER, b"v", ROW_MARKER),
)


def key_latencies(term: Terminal, presses: int, gap: float) -> dict[str, list[float]]:
    """Each round trip ``presses`` times: seconds from a key to the first output that shows its effect."""
    out: dict[str, list[float]] = {}
    for _ in range(presses):
        for name, open_key, open_marker, close_key, close_marker in KEY_ROUND_TRIPS:
            for action, key, marker in (("open", open_key, open_marker), ("close", close_key, close_marker)):
                start = term.position
                sent = term.send(key)
                shown = term.wait_for(marker, start, timeout=5)
                if shown is not None:
                    out.setdefault(f"{name} {action}", []).append(shown - sent)
                time.sleep(0.1)
        time.sleep(gap)
    return out


def display_lag(term: Terminal, written: list[tuple[int, float]], since: int) -> tuple[list[float], list[int]]:
    """For each output chunk that showed a newer record: seconds since it was written, records written after it."""
    with term.lock:
        data = bytes(term.output)
        arrivals = list(term.arrivals)
    lags: list[float] = []
    behind: list[int] = []
    newest = -1
    previous = since
    wi = 0
    for when, end in arrivals:
        if end <= since:
            continue
        chunk = data[max(previous, since) : end]
        previous = end
        seqs = [int(m.group(1)) for m in SEQ.finditer(chunk)]
        if not seqs or max(seqs) <= newest:
            continue
        newest = max(seqs)
        while wi < len(written) and written[wi][0] < newest:
            wi += 1
        if wi == len(written):
            break
        lags.append(when - written[wi][1])
        written_by_now = max((s for s, t in written if t <= when), default=newest)
        behind.append(max(0, written_by_now - newest))
    return lags, behind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000, help="records appended per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--presses", type=int, default=20, help="key round trips per phase")
    parser.add_argument("--initial-mb", type=float, default=20.0, help="size of the trace before the appends")
    args = parser.parse_args()
    path = Path("/tmp/phasef-bench-follow.jsonl")
    generate(path, args.initial_mb)
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")

    term = Terminal([*VIEWER, str(path), "--follow"])
    if term.wait_for(STREAM_MARKER, timeout=60) is None:
        print("the viewer did not start")
        term.close()
        return 1
    term.wait_idle()
    idle = key_latencies(term, args.presses, 0.15)

    log: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    start_at = time.monotonic() + 0.5
    appender = mp.Process(target=append, args=(str(path), args.rate, args.seconds, start_at, log))
    appender.start()
    while time.monotonic() < start_at + 1.0:  # let the flood start
        time.sleep(0.05)
    cpu0, t0 = term.cpu_seconds(), time.monotonic()
    since = term.position
    load = key_latencies(term, args.presses, max(0.05, (args.seconds - 3) / args.presses - 0.9))
    written, achieved = log.get(timeout=args.seconds + 30)
    appender.join()
    cpu1, t1 = term.cpu_seconds(), time.monotonic()
    last_seq = written[-1][0]
    caught = term.wait_for(f"L{last_seq:08d}".encode(), since, timeout=30)
    lags, behind = display_lag(term, written, since)
    rss = term.peak_rss_mb()
    term.close()

    print(
        f"viewer: {path}, 120x40 pty; appender: {achieved:,.0f} records/s for {args.seconds:g} s "
        f"({last_seq + 1:,} records)"
    )
    for name in idle.keys() | load.keys():
        print(f"{name:<20} idle (baseline): {summary(idle.get(name, []))}")
        print(f"{'':<20} under {args.rate:,}/s: {summary(load.get(name, []))}")
    idle_all = [v for values in idle.values() for v in values]
    load_all = [v for values in load.values() for v in values]
    if idle_all and load_all:
        ratio = statistics.median(load_all) / statistics.median(idle_all)
        print(f"median key latency under load / idle: {ratio:.2f}x")
    print(f"display lag behind the writer: {summary(lags)}")
    print(
        f"records written but not yet shown: median {sorted(behind)[len(behind) // 2] if behind else 0:,}, "
        f"max {max(behind) if behind else 0:,}"
    )
    if caught is not None:
        print(f"last record on screen {1000 * (caught - written[-1][1]):.0f} ms after it was written")
    print(f"viewer CPU under load: {100 * (cpu1 - cpu0) / (t1 - t0):.0f}% of a core; peak RSS {rss:.0f} MB")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    ordered = sorted(load_all)
    p95 = ordered[round(0.95 * (len(ordered) - 1))] if ordered else float("inf")
    ok = p95 < 0.1 and caught is not None
    print(
        f"{'PASS' if ok else 'MISS'}: p95 key latency under load {p95 * 1000:.0f} ms "
        f"(worst {max(ordered, default=float('inf')) * 1000:.0f} ms), target < 100 ms"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
