"""Merging the shards of a fanned-out ``api`` step into one dirty trace and one eval report.

Each shard ran the episodes whose index is its number modulo the shard count (``pipeline.jobs.shards``), wrote its
own trace and a ``shard.json`` (run id, task-set hash, model, packages, duration) into its folder. The merge checks
that all shards ran the same workload (run id and task set), puts every episode's records together in episode-id
order (each episode's records in the order its shard wrote them), writes the trace beside the shard folders and
judges it exactly as an unsharded run's trace is judged: same gate, same workload settings. Episodes of the
workload are independent (each has its own sandbox, its model requests are seeded by the tick), so the merged
content equals an unsharded run's with the same seeds; only times (``ts``, latencies, durations) differ.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from pipeline.bench.api_step import SHARD_RECORD, resolve_gate, summary, workload_settings
from pipeline.bench.params import ApiStepParams
from pipeline.bench.workload import RunResult
from pipeline.fsio import fsync_dir, fsync_path
from pipeline.report.eval_report import build_report, write_report


class ShardMergeError(Exception):
    pass


def _read_trace(path: Path) -> dict[str, list[bytes]]:
    episodes: dict[str, list[bytes]] = defaultdict(list)
    if not path.is_file():
        raise ShardMergeError(f"{path}: the shard wrote no trace")
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ShardMergeError(f"{path}:{number}: not JSON: {exc}") from None
        episode = record.get("episode") if isinstance(record, dict) else None
        if not isinstance(episode, str):
            raise ShardMergeError(f"{path}:{number}: episode: missing")
        episodes[episode].append(line)
    return episodes


def merge(raw_params: dict[str, Any], out_dir: Path, shard_dirs: list[Path]) -> dict[str, Any]:
    """Merge the shards' traces into ``out_dir``, write the report there and return the step's summary."""
    try:
        params = ApiStepParams.model_validate(raw_params)
    except ValidationError as exc:
        raise ShardMergeError(f"params: {exc.errors()[0]['msg']}") from None
    records = []
    for shard_dir in shard_dirs:
        try:
            records.append(json.loads((shard_dir / SHARD_RECORD).read_text()))
        except (OSError, ValueError) as exc:
            raise ShardMergeError(f"{shard_dir / SHARD_RECORD}: {exc}") from None
    first = records[0]
    for shard_dir, rec in zip(shard_dirs[1:], records[1:], strict=True):
        for key in ("run_id", "task_set_hash"):
            if rec.get(key) != first.get(key):
                raise ShardMergeError(f"{shard_dir.name} ran {key} {rec.get(key)!r}, shard 0 {first.get(key)!r}")
    merged: dict[str, list[bytes]] = {}
    owner: dict[str, str] = {}
    for shard_dir in shard_dirs:
        for episode, lines in _read_trace(shard_dir / params.trace).items():
            if episode in merged:
                raise ShardMergeError(f"episode {episode} is in both {owner[episode]} and {shard_dir.name}")
            merged[episode], owner[episode] = lines, shard_dir.name
    trace_path = out_dir / params.trace
    tmp = trace_path.with_name(f".{trace_path.name}.partial")
    with open(tmp, "wb") as fh:
        for episode in sorted(merged):
            fh.write(b"".join(line + b"\n" for line in merged[episode]))
    fsync_path(tmp)
    os.replace(tmp, trace_path)
    fsync_dir(out_dir)
    duration = max(float(r.get("duration_s") or 0.0) for r in records)
    aborted = next((r["aborted"] for r in records if r.get("aborted")), None)
    report = build_report(
        trace_path,
        run_id=first["run_id"],
        gate=resolve_gate(params),
        task_set_hash=first["task_set_hash"],
        model=first.get("model"),
        target=first.get("packages"),
        workload=workload_settings(params),
        api_key_env=first.get("api_key_env"),
        duration_s=duration,
        aborted=aborted,
    )
    write_report(report, out_dir / params.report)
    result = RunResult(
        run_id=first["run_id"],
        trace_path=trace_path,
        tasks=[],
        task_set_hash=first["task_set_hash"],
        episodes=len(merged),
        duration_s=duration,
        aborted=aborted,
    )
    out = summary(report, result, out_dir, params)
    out["shards"] = len(shard_dirs)
    return out
