"""The viewer's summary pass in a second process, so a big trace is summarized on the other core while the viewer's
process keeps its own for the screen (and its interpreter lock for the UI thread).

The worker runs the very same ``summary._summarize_batch`` over byte ranges of the file it reads itself, starting
from the state the viewer had summarized so far (episode and chain names, the open runs of each episode), and sends
back per batch only what the viewer's arrays lack: the columns as bytes, the new episode and chain names. The
viewer derives the chain and filter line lists from the columns. Results are therefore those of the in-process pass
(``tests/test_traces_summary_worker.py`` compares them on random and damaged traces).

Protocol on the worker's stdin/stdout: length-prefixed pickles. In: ``("init", path, state)``, then
``("batch", first, start, end, count)`` for lines ``first..first+count`` in bytes ``[start, end)``,
``("range", start, end, batch_bytes)`` for all the lines of bytes ``[start, end)`` (the worker finds where they end
itself, ``read_range``), or ``("state",)``. Out: one ``SummaryDelta`` per batch, in order (a range's numbered from its
start, its last one marked ``last``), or the open runs of each episode for ``state`` (the viewer takes them back when
it lets the worker go, so the in-process pass can go on from there). An exception ends the worker; the viewer then
summarizes the file again in-process.

For a big file, a second worker (started from an empty state) is given the second half of the file as a byte range as
soon as the file is opened, so both cores summarize from the start while the viewer's newline scan goes on; answers go
out through a sender thread, so it goes on while the viewer has not started reading them.
``summary_split.RangeMerge`` joins its answers on exactly.
"""

from __future__ import annotations

import fcntl
import gc
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from pipeline.traces.summary import _summarize_batch
from pipeline.traces.summary_columns import _EpisodeRuns, _Summaries
from pipeline.traces.worker_read import BatchReader, no_core_file, read_range

_HEADER = struct.Struct("<Q")
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
MAX_MESSAGE_BYTES = 1 << 30
PIPE_BYTES = 1 << 20
"""Pipe buffer asked for (Linux allows 1 MiB by default): a few batches' answers fit in it."""
COLUMNS = ("flags", "episode", "tick", "chain", "context_chars", "latency", "kind")
"""Column names in the order a delta carries them (``kind`` last: its length says how many lines are summarized)."""


@dataclass(frozen=True)
class SummaryDelta:
    """What one batch adds to the viewer's summary."""

    first: int
    count: int
    columns: tuple[bytes, ...]
    episode_names: list[str]
    chain_names: list[str]
    chain_episodes: bytes
    typecodes: str = ""
    """The array typecode of each column (narrow columns are widened when a value does not fit)."""
    last: bool = False
    """The last batch of a range asked with ``("range", ...)`` (its lines are numbered from the range's start)."""


def _send(stream: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("summary worker closed its pipe")
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE_BYTES:
        raise EOFError(f"summary worker sent a {size}-byte message: not this protocol")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("summary worker closed its pipe")
    return pickle.loads(data)


def state_of(s: _Summaries) -> dict[str, Any]:
    """What a worker needs to go on from ``s``: names, chain episodes, open runs (not the per-line arrays)."""
    return {
        "lines": len(s),
        "episodes": list(s.episodes.names),
        "chains": list(s.chains.names),
        "chain_episode": s.chain_episode.tobytes(),
        "runs": open_runs(s),
    }


def open_runs(s: _Summaries) -> dict[int, tuple[dict[str, dict[str, int]], int]]:
    """The open runs of each episode of ``s``, copied."""
    return {ep: ({verb: dict(c) for verb, c in st.runs.items()}, st.no_progress) for ep, st in s.episode_state.items()}


def _restore(state: dict[str, Any]) -> _Summaries:
    """A transient summary going on from ``state``."""
    s = _Summaries(transient=True)  # (its lines go out with each batch: the compact forms would only cost time)
    for name in state["episodes"]:
        s.episodes.intern(name)
    for name in state["chains"]:
        s.chains.intern(name)
        s.chain_lines.new(-1)  # (the worker sends no chain lines: the viewer derives them from the columns)
    s.chain_episode.frombytes(state["chain_episode"])
    for ep, (runs, no_progress) in state["runs"].items():
        st = s.episode_state[ep] = _EpisodeRuns()
        st.runs = runs
        st.no_progress = no_progress
    return s


def summarize_delta(s: _Summaries, first: int, parts: list[bytes] | bytes | memoryview) -> SummaryDelta:
    """Summarize ``parts`` (lines ``first..``, or a block of them) on top of ``s`` and return what they add; ``s``
    keeps no per-line data afterwards (only names and the open runs of each episode)."""
    names, chains = len(s.episodes.names), len(s.chains.names)
    s.flagged_upto = first
    count = _summarize_batch(s, first, parts, flag_lines=False)
    columns = tuple(getattr(s, name).tobytes() for name in COLUMNS)
    delta = SummaryDelta(
        first=first,
        count=count,
        columns=columns,
        episode_names=s.episodes.names[names:],
        chain_names=s.chains.names[chains:],
        chain_episodes=s.chain_episode[chains:].tobytes(),
        typecodes="".join(getattr(s, name).typecode for name in COLUMNS),
    )
    for name in COLUMNS:
        del getattr(s, name)[:]
    for lines in s.flag_lines.values():
        del lines[:]
    return delta


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """The worker: summarize the batches asked for, in order, until the input ends.

    Answers go out through a sender thread, so the worker goes on summarizing while its reader is busy elsewhere
    (the viewer reads the answers of a second worker's range only once the first range is done).
    """
    _, path, state = _receive(inp)
    no_core_file()
    s = _restore(state)
    # The worker makes no cycles to collect (dicts of open runs, names, answers that go out): collections would only
    # walk what it holds. Fewer and over less: ~3 % of a worker's CPU on a 1 GB trace.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    fd = os.open(path, os.O_RDONLY)
    batches = BatchReader()
    outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
    sender = threading.Thread(target=_send_all, args=(out, outbox), daemon=True)
    sender.start()
    try:
        while True:
            try:
                request = _receive(inp)
            except EOFError:
                return
            if request[0] == "state":
                outbox.put(open_runs(s))  # a copy: the sender pickles it while the next batches go on
                continue
            if request[0] == "range":
                _, start, end, batch_bytes = request
                first = 0
                delta = None
                for parts in read_range(fd, start, end, batch_bytes):
                    if delta is not None:
                        outbox.put(delta)
                    delta = summarize_delta(s, first, parts)
                    first += delta.count
                outbox.put(replace(summarize_delta(s, first, []) if delta is None else delta, last=True))
                continue
            _, first, start, end, count = request
            outbox.put(summarize_delta(s, first, batches.read(fd, start, end, count)))
    finally:
        os.close(fd)
        outbox.put(_DONE)
        sender.join()


_DONE = object()


def _send_all(out: IO[bytes], outbox: queue.SimpleQueue[object]) -> None:
    while True:
        item = outbox.get()
        if item is _DONE:
            return
        try:
            _send(out, item)
        except (BrokenPipeError, OSError):
            return  # the viewer let the worker go


class SummaryWorker:
    """The viewer's handle on a worker process (started by ``start``; ``close`` ends it)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.in_flight: list[tuple[int, int]] = []
        """(first line, line count) of the batches sent and not yet answered, in order."""
        self.ranges = 0
        """Ranges asked (``ask_range``) whose last answer has not been read yet."""

    @classmethod
    def start(cls, path: Path, s: _Summaries) -> SummaryWorker | None:
        """A worker going on from ``s``, or None when no process can be started."""
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.traces.summary_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
        except OSError:
            return None
        for stream in (proc.stdin, proc.stdout):  # room for several answers: the worker never waits for a reader
            try:
                fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[union-attr]
            except (OSError, AttributeError):
                pass
        worker = cls(proc)
        try:
            worker._send(("init", str(path), state_of(s)))
        except OSError:
            worker.close()
            return None
        return worker

    def _send(self, obj: object) -> None:
        assert self.proc.stdin is not None
        _send(self.proc.stdin, obj)

    def ask(self, first: int, start: int, end: int, count: int) -> None:
        self._send(("batch", first, start, end, count))
        self.in_flight.append((first, count))

    def ask_range(self, start: int, end: int, batch_bytes: int) -> None:
        """Ask for the lines of bytes ``[start, end)`` (``read_range``): answers numbered from 0, the last marked."""
        self._send(("range", start, end, batch_bytes))
        self.ranges += 1

    def answer_range(self) -> SummaryDelta:
        """The next delta of the range asked (blocks until it comes); EOFError/OSError when the worker is gone."""
        assert self.proc.stdout is not None and self.ranges and not self.in_flight
        try:
            delta = _receive(self.proc.stdout)
        except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
            raise EOFError(f"summary worker sent something else: {exc}") from exc
        if not isinstance(delta, SummaryDelta):
            raise EOFError("summary worker answered out of order")
        if delta.last:
            self.ranges -= 1
        return delta

    def answer(self) -> SummaryDelta:
        """The next batch's delta (blocks until it comes); raises EOFError/OSError when the worker is gone."""
        assert self.proc.stdout is not None
        try:
            delta = _receive(self.proc.stdout)
        except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
            raise EOFError(f"summary worker sent something else: {exc}") from exc
        if not isinstance(delta, SummaryDelta) or (delta.first, delta.count) != self.in_flight[0]:
            raise EOFError("summary worker answered out of order")
        self.in_flight.pop(0)
        return delta

    def episode_state(self) -> dict[int, _EpisodeRuns]:
        """The open runs of each episode as the worker has them (ask only with nothing in flight)."""
        self._send(("state",))
        assert self.proc.stdout is not None
        runs = _receive(self.proc.stdout)
        state: dict[int, _EpisodeRuns] = {}
        for ep, (open_runs, no_progress) in runs.items():
            st = state[ep] = _EpisodeRuns()
            st.runs = open_runs
            st.no_progress = no_progress
        return state

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def main() -> int:
    # run as ``-m``, this module is ``__main__``: serve from the importable module so pickles name its classes
    from pipeline.traces import summary_worker

    try:
        summary_worker.serve(sys.stdin.buffer, sys.stdout.buffer)
    except (EOFError, BrokenPipeError):
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
