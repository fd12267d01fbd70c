"""A dirty trace as OpenTelemetry spans with the GenAI semantic conventions, in the OTLP JSON encoding, so that
tools which read OTLP (Phoenix, Langfuse, Jaeger) can open it.

Each episode is one trace: an ``invoke_agent`` span from its start to its end, and under it, per tick, an
``execute_tool`` span (the action; a tick without an action, a failed model call, becomes a ``chat`` span). A
tick's span runs from the record before it to the tick itself (the canonical trace stamps a record when it is
written). A failing tick's span has status ERROR with ``error.type`` = its error class; an episode that died or timed
out has status ERROR on its agent span. Everything the spans cannot say in ``gen_ai.*`` terms is kept under
``phasef.*`` attributes (outcome, trap, chain, progress, source).

The output is written span by span: one ``ExportTraceServiceRequest`` whose span list is streamed, so a trace of
any size is exported in bounded memory (one open episode at a time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

SERVICE = "phasef"
SCOPE = {"name": "phasef.traces.export_otlp", "version": "1"}
STATUS_OK = {"code": 1}
_ERROR_OUTCOMES = ("death", "timeout")


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    return {"stringValue": orjson.dumps(value, default=str).decode()}


def _attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in values.items() if value is not None]


def _id(*parts: Any, size: int) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[: size * 2]


def _nanos(seconds: Any) -> str:
    return str(int(float(seconds) * 1e9)) if isinstance(seconds, int | float) and not isinstance(seconds, bool) else "0"


class _Episode:
    def __init__(self, start: dict[str, Any]) -> None:
        self.start = start
        self.key = (start.get("run_id"), start.get("episode"))
        self.trace_id = _id(*self.key, size=16)
        self.root_id = _id(*self.key, "root", size=8)
        self.last_ts = start.get("ts")

    def tick_span(self, tick: dict[str, Any]) -> dict[str, Any]:
        action = tick.get("action") if isinstance(tick.get("action"), dict) else None
        tool = action.get("tool") if action is not None else None
        failed = tick.get("error_class") is not None
        if action is not None:
            args = action.get("args", {k: v for k, v in action.items() if k != "tool"})
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": str(tool or "?"),
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": tick.get("tool_call_id"),
                "gen_ai.tool.call.arguments": orjson.dumps(args, default=str).decode(),
                "gen_ai.tool.call.result": tick.get("observation"),
            }
            name = f"execute_tool {tool or '?'}"
        else:
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.output.messages": tick.get("raw_output")}
            name = "chat"
        model = self.start.get("model")
        attrs.update(
            {
                "gen_ai.request.model": model if isinstance(model, str) else None,
                "gen_ai.usage.input_tokens": tick.get("prompt_tokens"),
                "gen_ai.usage.output_tokens": tick.get("completion_tokens"),
                "error.type": tick.get("error_class"),
                "phasef.tick": tick.get("tick"),
                "phasef.actor": tick.get("actor"),
                "phasef.outcome": tick.get("outcome"),
                "phasef.latency_s": tick.get("latency_s"),
                "phasef.context_chars": tick.get("context_chars"),
                "phasef.trap": tick.get("trap"),
                "phasef.chain_id": tick.get("chain_id"),
                "phasef.chain_role": tick.get("chain_role"),
                "phasef.recovery": tick.get("recovery"),
                "phasef.progress": tick.get("progress"),
                "phasef.schema_error": tick.get("schema_error"),
            }
        )
        span = {
            "traceId": self.trace_id,
            "spanId": _id(*self.key, "tick", tick.get("tick"), size=8),
            "parentSpanId": self.root_id,
            "name": name,
            "kind": 1,
            "startTimeUnixNano": _nanos(self.last_ts if self.last_ts is not None else tick.get("ts")),
            "endTimeUnixNano": _nanos(tick.get("ts")),
            "attributes": _attributes(attrs),
            "status": STATUS_OK,
        }
        if failed:
            message = tick.get("error") or tick.get("error_class")
            span["status"] = {"code": 2, "message": str(message)}
        self.last_ts = tick.get("ts", self.last_ts)
        return span

    def root_span(self, end: dict[str, Any] | None) -> dict[str, Any]:
        start = self.start
        task_id = start.get("task_id")
        attrs = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": str(task_id) if task_id is not None else None,
            "gen_ai.conversation.id": str(start.get("episode")),
            "gen_ai.request.model": start.get("model") if isinstance(start.get("model"), str) else None,
            "gen_ai.input.messages": start.get("task"),
            "phasef.run_id": start.get("run_id"),
            "phasef.outcome": end.get("outcome") if end else "unfinished",
            "phasef.solved": end.get("solved") if end else None,
            "phasef.reason": end.get("reason") if end else None,
            "error.type": end.get("error_class") if end else None,
        }
        source = start.get("source")
        if isinstance(source, dict):
            attrs["phasef.source.format"] = source.get("format")
            attrs["phasef.source.file"] = source.get("file")
        span: dict[str, Any] = {
            "traceId": self.trace_id,
            "spanId": self.root_id,
            "parentSpanId": "",
            "name": f"invoke_agent {task_id if task_id is not None else start.get('episode')}",
            "kind": 1,
            "startTimeUnixNano": _nanos(start.get("ts")),
            "endTimeUnixNano": _nanos((end or {}).get("ts", self.last_ts)),
            "attributes": _attributes(attrs),
            "status": STATUS_OK,
        }
        if end is not None and end.get("outcome") in _ERROR_OUTCOMES:
            span["status"] = {"code": 2, "message": str(end.get("reason") or end.get("outcome"))}
        return span


def iter_spans(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """OTLP span objects of canonical records, episode by episode (an episode's root span after its ticks)."""
    open_episodes: dict[tuple[Any, Any], _Episode] = {}
    for record in records:
        kind = record.get("kind")
        key = (record.get("run_id"), record.get("episode"))
        if kind == "episode_start":
            open_episodes[key] = _Episode(record)
            continue
        episode = open_episodes.get(key)
        if episode is None:  # a tick or end without a start (a trace cut at its head): start one from it
            episode = open_episodes[key] = _Episode({**record, "kind": "episode_start"})
        if kind == "tick":
            yield episode.tick_span(record)
        elif kind == "episode_end":
            yield episode.root_span(record)
            del open_episodes[key]
    for episode in open_episodes.values():
        yield episode.root_span(None)


def write_otlp_json(records: Iterable[dict[str, Any]], out: IO[bytes], *, service: str = SERVICE) -> int:
    """Write one OTLP JSON export request holding the spans of ``records``; returns the number of spans."""
    resource = {"attributes": _attributes({"service.name": service})}
    out.write(b'{"resourceSpans":[{"resource":' + orjson.dumps(resource) + b',"scopeSpans":[{"scope":')
    out.write(orjson.dumps(SCOPE) + b',"spans":[\n')
    count = 0
    for span in iter_spans(records):
        if count:
            out.write(b",\n")
        out.write(orjson.dumps(span))
        count += 1
    out.write(b"\n]}]}]}\n")
    return count
