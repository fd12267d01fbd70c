"""A runner's own JSONL, read through a mapping file: ``phasef trace import --from jsonl --map map.toml``.

A runner that already writes one JSON object per line needs no rewrite; a small TOML file says where each canonical
field is in its records::

    [fields]                 # canonical field = dotted path in the runner's record
    kind = "type"            # optional: without it every line is a tick, and episodes are framed for it
    episode = "run.episode"
    tick = "step"            # optional: without it ticks are numbered 0, 1, 2, ... per episode
    ts = "time"
    actor = "who"
    outcome = "result"
    error_class = "error.type"
    raw_output = "llm.text"
    context_chars = "prompt_chars"

    [values.kind]            # the runner's value = the canonical value (other values pass unchanged)
    start = "episode_start"
    step = "tick"
    end = "episode_end"

    [values.outcome]
    fail = "error"

    [units]
    ts = "ms"                # s (default), ms or iso (ISO 8601 text)
    latency_s = "ms"         # s (default) or ms

A canonical field the map does not name is taken from the runner's record under its own name when present
(``copy_unmapped = false`` turns that off). Without a ``kind`` every line is a tick: each episode gets an
``episode_start`` before its first tick and an ``episode_end`` after its last (outcome ``death`` when a tick died,
``success`` when the last tick succeeded, else ``failure``). Every record keeps its provenance in ``source`` (the
runner's file and line, the mapping file).
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.traces.importers._common import Origin
from pipeline.traces.reader import BadLine, good_records
from pipeline.traces.schema import RECORD_TYPES, SCHEMA_VERSION

FORMAT = "jsonl"
CANONICAL_FIELDS: frozenset[str] = frozenset(
    (info.alias or name) for cls in RECORD_TYPES.values() for name, info in cls.model_fields.items()
) - {"source"}


class TraceMap(BaseModel):
    """A mapping file."""

    model_config = ConfigDict(extra="forbid")
    fields: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)
    units: dict[str, str] = Field(default_factory=dict)
    copy_unmapped: bool = True

    def check(self) -> list[str]:
        problems = [f"fields.{k}: not a field of {SCHEMA_VERSION}" for k in self.fields if k not in CANONICAL_FIELDS]
        problems += [f"values.{k}: not a field of {SCHEMA_VERSION}" for k in self.values if k not in CANONICAL_FIELDS]
        for key, unit in self.units.items():
            allowed = {"ts": ("s", "ms", "iso"), "latency_s": ("s", "ms"), "duration_s": ("s", "ms")}.get(key)
            if allowed is None:
                problems.append(f"units.{key}: only ts, latency_s and duration_s take a unit")
            elif unit not in allowed:
                problems.append(f"units.{key}: expected one of {', '.join(allowed)}, got {unit!r}")
        return problems


class MapError(ValueError):
    """The mapping file cannot be used (the message names the file and the key)."""


def load_map(path: Path) -> TraceMap:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise MapError(f"{path}: cannot read the mapping file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MapError(f"{path}: TOML syntax: {exc}") from None
    try:
        trace_map = TraceMap.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise MapError(f"{path}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    problems = trace_map.check()
    if problems:
        raise MapError(f"{path}: " + "; ".join(problems))
    return trace_map


_MISSING = object()


def _get(obj: dict[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _convert_unit(key: str, value: Any, unit: str | None) -> Any:
    if unit is None or unit == "s" or value is None:
        return value
    if unit == "ms" and isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000.0
    if unit == "iso" and isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise ValueError(f"field '{key}': not an ISO 8601 time: {value!r}") from None
    return value


def map_record(obj: dict[str, Any], trace_map: TraceMap) -> dict[str, Any]:
    """The canonical fields of one runner record (without provenance); ``ValueError`` names a bad field."""
    out: dict[str, Any] = {}
    if trace_map.copy_unmapped:
        for key in CANONICAL_FIELDS:
            if key not in trace_map.fields and key in obj:
                out[key] = obj[key]
    for key, path in trace_map.fields.items():
        value = _get(obj, path)
        if value is not _MISSING:
            out[key] = value
    for key, table in trace_map.values.items():
        if key in out and isinstance(out[key], str | int | float | bool) and str(out[key]) in table:
            out[key] = table[str(out[key])]
    for key, unit in trace_map.units.items():
        if key in out:
            out[key] = _convert_unit(key, out[key], unit)
    if "episode" in out and isinstance(out["episode"], int | float) and not isinstance(out["episode"], bool):
        out["episode"] = str(out["episode"])
    return out


def _frame(episode: str, ticks: list[dict[str, Any]], origin: Origin, map_file: str) -> list[dict[str, Any]]:
    """episode_start + ticks + episode_end for a runner that writes ticks only."""
    first, last = ticks[0], ticks[-1]
    outcomes = [t.get("outcome") for t in ticks]
    outcome = "death" if "death" in outcomes else ("success" if outcomes[-1] == "success" else "failure")
    source = {"format": FORMAT, "file": origin.file, "line": None, "sha256": origin.sha256, "map": map_file}
    common = {"schema": SCHEMA_VERSION, "episode": episode}
    if first.get("run_id"):
        common["run_id"] = first["run_id"]
    start = {**common, "kind": "episode_start", "ts": first.get("ts"), "source": source, "framed": True}
    end = {
        **common,
        "kind": "episode_end",
        "ts": last.get("ts"),
        "outcome": outcome,
        "ticks": len(ticks),
        "solved": outcome == "success",
        "source": source,
        "framed": True,
    }
    return [start, *ticks, end]


def convert(path: Path, map_path: Path, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """Canonical record dicts from a runner's JSONL through ``map_path`` (validation is the caller's)."""
    trace_map = load_map(map_path)
    bad: list[BadLine] = []
    records: list[dict[str, Any]] = []
    framed: dict[str, list[dict[str, Any]]] = {}
    has_kind = "kind" in trace_map.fields
    for line, obj in good_records(path, bad.append):
        try:
            record = map_record(obj, trace_map)
        except ValueError as exc:
            bad.append(BadLine(file=origin.file, line=line, reason=str(exc)))
            continue
        record["schema"] = SCHEMA_VERSION
        record["source"] = {
            "format": FORMAT,
            "file": origin.file,
            "line": line,
            "sha256": origin.sha256,
            "map": str(map_path),
        }
        if has_kind or "kind" in record:
            records.append(record)
            continue
        record["kind"] = "tick"
        episode = record.get("episode")
        if not isinstance(episode, str) or not episode:
            bad.append(BadLine(file=origin.file, line=line, reason="field 'episode': missing"))
            continue
        ticks = framed.setdefault(episode, [])
        record.setdefault("tick", len(ticks))
        ticks.append(record)
    for episode, ticks in framed.items():
        records.extend(_frame(episode, ticks, origin, str(map_path)))
    return records, bad
