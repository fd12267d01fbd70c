"""The schema is the contract: records generated from the published schema are accepted by phasef's validators,
objects the schema refuses are refused by the validator (and the other way round), and a trace reaches the same
eval report whether it arrives as phasef JSONL or as a runner's own JSONL through a mapping file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.report.eval_report import Gate, build_report, report_json
from pipeline.traces.analysis import analyze, record_problem
from pipeline.traces.importers import import_trace
from pipeline.traces.schema import parse_record

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "schemas" / "dirty_trace.v1.schema.json").read_text())
SCHEMA.pop("$id")  # a name, not a URL to resolve "#/$defs/..." against
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _accepted(obj: dict[str, Any]) -> bool:
    try:
        parse_record(obj)
    except (ValidationError, ValueError):
        return False
    return True


_JSON_LEAVES = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_KNOWN_KEYWORDS = {"$defs", "$id", "$ref", "additionalProperties", "anyOf", "const", "default", "description", "enum",
                   "items", "minLength", "minimum", "properties", "required", "title", "type"}  # fmt: skip


def from_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values valid against ``schema``: a generator for the keywords the published trace schema uses (any other
    keyword fails the test, so a schema change cannot slip past it)."""
    root = root if root is not None else schema
    unknown = set(schema) - _KNOWN_KEYWORDS
    assert not unknown, f"the generator does not know {unknown}"
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return st.deferred(lambda: from_schema(root["$defs"][name], root))
    if "anyOf" in schema:
        return st.one_of([from_schema(s, root) for s in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=12)
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum", -(2**40)), max_value=2**40)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**40), 2**40)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), root) if schema.get("items") else _JSON, max_size=3)
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        optional = [k for k in properties if k not in required]
        extra = st.dictionaries(
            st.text(min_size=1, max_size=6).filter(lambda k: k not in properties), _JSON, max_size=2
        )

        @st.composite
        def objects(draw: st.DrawFn) -> dict[str, Any]:
            out = {k: draw(from_schema(properties[k], root)) for k in required}
            for k in draw(st.lists(st.sampled_from(optional), unique=True)) if optional else []:
                out[k] = draw(from_schema(properties[k], root))
            if schema.get("additionalProperties", True) is not False:
                out = draw(extra) | out
            return out

        return objects()
    return _JSON


@SETTINGS
@given(from_schema(SCHEMA))
def test_every_record_the_schema_allows_is_accepted(record: dict[str, Any]) -> None:
    assert _accepted(record), record
    assert record_problem(record) is None, record


# Values of every JSON type (integers without a fraction: a JSON 1.0 in an integer field is refused by phasef, while
# JSON Schema counts it as an integer; docs/trace-format.md says so).
_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.sampled_from(["", "x", "1", "1.5", "true", "tick", "ok", "death", "recovered", "phasef.dirty_trace/1"]),
    st.just([]),
    st.just(["flaky"]),
    st.just({}),
)
_KINDS = st.sampled_from(["tick", "episode_start", "episode_end"])
_FIELDS = [
    "schema", "run_id", "episode", "task_id", "ts", "ts_estimated", "source", "tick", "actor", "latency_s",
    "prompt_tokens", "context_chars", "context", "raw_output", "action", "schema_error", "outcome", "error_class",
    "trap", "chain_id", "chain_role", "recovery", "progress", "thrash", "death_reason", "traps", "context_window",
    "ticks", "solved", "duration_s", "model", "seed",
]  # fmt: skip


@st.composite
def near_records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid-looking record with some fields replaced by values of any type (or removed)."""
    kind = draw(_KINDS)
    base: dict[str, Any] = {"kind": kind, "episode": "e1", "ts": 1764547200.5}
    if kind == "tick":
        base |= {"tick": 0, "outcome": "ok"}
    elif kind == "episode_end":
        base |= {"outcome": "success", "ticks": 1}
    for name in draw(st.lists(st.sampled_from(["kind", *_FIELDS]), max_size=4, unique=True)):
        if draw(st.booleans()) and name in base:
            del base[name]
        else:
            base[name] = draw(_ANY)
    return base


@settings(max_examples=400, deadline=None)
@given(near_records())
def test_the_validator_refuses_exactly_what_the_schema_refuses(record: dict[str, Any]) -> None:
    schema_ok = VALIDATOR.is_valid(record)
    assert _accepted(record) == schema_ok, (record, [e.message for e in VALIDATOR.iter_errors(record)])


# -- the same report through the mapping importer -----------------------------------------------------------------

GATE = Gate(min_ticks=5, context_budget_chars=3000, max_context_growth_per_tick=16.0, context_warmup_ticks=None,
            require_evidence=True)  # fmt: skip
MAP = """
[fields]
kind = "type"
episode = "meta.episode"
tick = "step"
ts = "time_ms"
actor = "who"
outcome = "result"
error_class = "err.class"
raw_output = "reply"
context_chars = "prompt.chars"
latency_s = "latency_ms"
chain_id = "chain.id"
chain_role = "chain.role"

[values.kind]
begin = "episode_start"
step = "tick"
finish = "episode_end"

[values.outcome]
OK = "ok"
FAIL = "error"
DIED = "death"
DONE = "success"

[units]
ts = "ms"
latency_s = "ms"
"""
_OUTCOMES = {"ok": "OK", "error": "FAIL", "death": "DIED", "success": "DONE"}
_KIND_NAMES = {"episode_start": "begin", "tick": "step", "episode_end": "finish"}


@st.composite
def traces(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid canonical traces: episodes with contiguous ticks, well-formed chains, traps, deaths, latencies."""
    records: list[dict[str, Any]] = []
    ts_ms = draw(st.integers(1_700_000_000_000, 1_800_000_000_000))
    for e in range(draw(st.integers(1, 4))):
        episode = f"ep{e}"
        window = draw(st.none() | st.integers(0, 6))
        start: dict[str, Any] = {"kind": "episode_start", "episode": episode, "ts": ts_ms / 1000, "traps": ["flaky"]}
        if window is not None:
            start["context_window"] = window
        records.append(start)
        n = draw(st.integers(0, 14))
        chain: str | None = None
        died = False
        for t in range(n):
            ts_ms += draw(st.integers(1, 5000))
            tick: dict[str, Any] = {"kind": "tick", "episode": episode, "tick": t, "ts": ts_ms / 1000}
            tick["actor"] = draw(st.sampled_from(["model", "repair", "reflex"]))
            tick["context_chars"] = draw(st.integers(0, 2500))
            if draw(st.booleans()):
                tick["latency_s"] = draw(st.integers(1, 4000)) / 1000
            if draw(st.booleans()):
                tick["raw_output"] = draw(st.sampled_from(["{}", "garbage", '{"act":"x"}']))
            if draw(st.integers(0, 5)) == 0:
                tick["trap"] = "flaky"
            if draw(st.integers(0, 6)) == 0:
                tick["thrash"] = True
            last = t == n - 1
            if chain is None and draw(st.integers(0, 3)) == 0:
                chain = f"{episode}-c{t}"
                tick |= {"outcome": "error", "error_class": draw(st.sampled_from(["SchemaViolation", "CheckFailed"]))}
                tick |= {"chain_id": chain, "chain_role": "failure"}
                if last:
                    tick |= {"outcome": "death", "chain_role": "death", "death_reason": "out of ticks"}
                    died = True
            elif chain is not None:
                step = "death" if last else draw(st.sampled_from(["attempt", "recovered"]))
                outcome = {"attempt": "error", "recovered": "ok", "death": "death"}[step]
                tick |= {"outcome": outcome, "chain_id": chain, "chain_role": step}
                if step == "recovered":
                    tick["recovery"] = draw(st.sampled_from(["reflex", "schema_repair"]))
                if step != "attempt":
                    chain = None
                died = died or step == "death"
            else:
                tick["outcome"] = "success" if last else "ok"
            records.append(tick)
        outcome = "death" if died else ("success" if n and records[-1].get("outcome") == "success" else "failure")
        records.append(
            {
                "kind": "episode_end",
                "episode": episode,
                "ts": ts_ms / 1000,
                "outcome": outcome,
                "ticks": n,
                "solved": outcome == "success",
            }
        )
    return records


def _foreign(record: dict[str, Any]) -> dict[str, Any]:
    """The same record as a runner writing its own JSONL would (other names, nesting, milliseconds)."""
    out: dict[str, Any] = {"type": _KIND_NAMES[record["kind"]], "meta": {"episode": record["episode"]}}
    out["time_ms"] = round(record["ts"] * 1000)
    renames = {"tick": "step", "actor": "who", "raw_output": "reply"}
    for key, value in record.items():
        if key in ("kind", "episode", "ts"):
            continue
        if key == "outcome":
            out["result"] = _OUTCOMES.get(value, value)
        elif key == "error_class":
            out["err"] = {"class": value}
        elif key == "context_chars":
            out["prompt"] = {"chars": value}
        elif key == "latency_s":
            out["latency_ms"] = round(value * 1000)
        elif key in ("chain_id", "chain_role"):
            out.setdefault("chain", {})[key.split("_")[1]] = value
        else:
            out[renames.get(key, key)] = value
    return out


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ("createdAt", "trace")}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(traces())
def test_the_report_is_the_same_through_the_mapping_importer(
    tmp_path_factory: Any, records: list[dict[str, Any]]
) -> None:
    folder: Path = tmp_path_factory.mktemp("mapped")
    native = folder / "native.jsonl"
    native.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    foreign = folder / "runner.jsonl"
    foreign.write_bytes(b"".join(orjson.dumps(_foreign(r)) + b"\n" for r in records))
    (folder / "map.toml").write_text(MAP)

    imported, bad = import_trace(foreign, "jsonl", mapping=folder / "map.toml")
    assert bad == []
    converted = folder / "converted.jsonl"
    converted.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in imported))

    direct = build_report(native, run_id="r", gate=GATE, task_set_hash="h")
    mapped = build_report(converted, run_id="r", gate=GATE, task_set_hash="h")
    assert _comparable(report_json(mapped)) == _comparable(report_json(direct))
    assert direct.trace.records == mapped.trace.records
    # and trace stats agrees with the report on the growth: one definition
    stats = analyze(native)
    assert stats.context.growth_per_tick == (direct.context_profile.growth_per_tick or 0.0)
