"""OpenTelemetry spans with the GenAI semantic conventions, as OTLP JSON: one ``ExportTraceServiceRequest``
(``{"resourceSpans": [{"resource", "scopeSpans": [{"scope", "spans": [...]}]}]}``) per file, or one per line (what
the collector's file exporter writes).

Attribute values are OTLP ``AnyValue`` objects (``stringValue``, ``intValue`` as a string, ``doubleValue``,
``boolValue``, ``arrayValue``, ``kvlistValue``). The span kind that matters is ``gen_ai.operation.name``:
``execute_tool`` (a tool call: ``gen_ai.tool.name``, ``gen_ai.tool.call.id``, ``gen_ai.tool.call.arguments`` /
``.result``), ``chat`` / ``text_completion`` / ``generate_content`` (a model call: ``gen_ai.request.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``) and ``invoke_agent`` (the agent run). Spans of the OpenInference
conventions (``openinference.span.kind`` TOOL / LLM / AGENT with ``tool.name``, ``input.value``, ``output.value``)
are read the same way.

One trace (``traceId``) is one episode. Each ``execute_tool`` span is a tick; a model call is a tick of its own only
when it failed, or when the trace has no tool spans at all (a plain chat). A tool tick's latency is the duration of
the model call that ended just before it. Failures: span ``status.code`` ERROR (2), classed by ``error.type``, else
by an ``exception`` event's ``exception.type``, else ``ToolError`` (tool) / ``ConnectionError`` (model call); an
``error.type`` naming a timeout is ``Timeout``; ``<class 'openai.RateLimitError'>`` (how one release pair of the
OpenAI instrumentation writes it) is read as ``RateLimitError``; an exit status in the message (Python's
``CalledProcessError``) is the tick's ``exit_code``. The episode is a ``death`` when its root span failed, else
``success`` (not graded). The task is the agent span's input, else the first user message of the first model call's
``gen_ai.input.messages``; the model is ``gen_ai.response.model`` / ``gen_ai.request.model`` / ``llm.model_name``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from pipeline.traces.importers._common import EpisodeBuilder, Origin, Step, one_line
from pipeline.traces.reader import BadLine, good_records

FORMAT = "otel-genai"

_MODEL_CALLS = frozenset({"chat", "text_completion", "generate_content", "completion"})
_STATUS_ERROR = (2, "2", "STATUS_CODE_ERROR")
_EXIT_STATUS = re.compile(r"returned non-zero exit status (-?\d+)")
_USAGE = (("gen_ai.usage.input_tokens", "prompt_tokens"), ("gen_ai.usage.output_tokens", "completion_tokens"))


def sniff(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("resourceSpans"), list)


def sniff_line(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("resourceSpans"), list)


def any_value(value: Any) -> Any:
    """The plain value of an OTLP ``AnyValue``."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        raw = value["intValue"]
        try:
            return int(raw)
        except (TypeError, ValueError):
            return raw
    if "doubleValue" in value:
        return value["doubleValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "arrayValue" in value:
        inner = value["arrayValue"]
        values = inner.get("values") if isinstance(inner, dict) else None
        return [any_value(v) for v in values] if isinstance(values, list) else []
    if "kvlistValue" in value:
        inner = value["kvlistValue"]
        values = inner.get("values") if isinstance(inner, dict) else None
        return attributes(values)
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def attributes(items: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                result[item["key"]] = any_value(item.get("value"))
    return result


def _nanos(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _spans(doc: dict[str, Any], where: str, file: str, line: int, bad: list[BadLine]) -> list[dict[str, Any]]:
    """Flat spans of one request, each with its decoded attributes and its resource's service name."""
    found: list[dict[str, Any]] = []
    resource_spans = doc.get("resourceSpans")
    if not isinstance(resource_spans, list):
        bad.append(BadLine(file=file, line=line, reason=f"{where}: field 'resourceSpans': expected a list"))
        return found
    for r, resource_span in enumerate(resource_spans):
        if not isinstance(resource_span, dict):
            bad.append(BadLine(file=file, line=line, reason=f"{where}/resourceSpans/{r}: expected an object"))
            continue
        resource = resource_span.get("resource")
        service = attributes(resource.get("attributes")).get("service.name") if isinstance(resource, dict) else None
        scope_spans = resource_span.get("scopeSpans", resource_span.get("instrumentationLibrarySpans"))
        if not isinstance(scope_spans, list):
            continue
        for s, scope_span in enumerate(scope_spans):
            spans = scope_span.get("spans") if isinstance(scope_span, dict) else None
            if not isinstance(spans, list):
                continue
            for k, span in enumerate(spans):
                pointer = f"{where}/resourceSpans/{r}/scopeSpans/{s}/spans/{k}"
                if not isinstance(span, dict) or not isinstance(span.get("traceId"), str):
                    bad.append(BadLine(file=file, line=line, reason=f"{pointer}: field 'traceId': expected a string"))
                    continue
                start = _nanos(span.get("startTimeUnixNano"))
                end = _nanos(span.get("endTimeUnixNano"))
                found.append(
                    {
                        "trace": span["traceId"],
                        "id": span.get("spanId"),
                        "parent": span.get("parentSpanId") or None,
                        "name": str(span.get("name") or ""),
                        "start": start,
                        "end": end,
                        "attrs": attributes(span.get("attributes")),
                        "status": span.get("status") if isinstance(span.get("status"), dict) else {},
                        "events": span.get("events") if isinstance(span.get("events"), list) else [],
                        "service": service,
                        "pointer": pointer,
                        "line": line,
                    }
                )
    return found


def _failure(span: dict[str, Any], default: str) -> tuple[str, str] | None:
    status = span["status"]
    if status.get("code") not in _STATUS_ERROR:
        return None
    message = str(status.get("message") or "")
    error_type = span["attrs"].get("error.type")
    for event in span["events"]:
        if isinstance(event, dict) and event.get("name") == "exception":
            attrs = attributes(event.get("attributes"))
            error_type = error_type or attrs.get("exception.type")
            message = message or str(attrs.get("exception.message") or "")
    # "openai.RateLimitError", or "<class 'openai.RateLimitError'>" as opentelemetry-instrumentation-openai-v2 2.4b0
    # writes it with opentelemetry-util-genai 1.1b0
    name = str(error_type).removeprefix("<class '").removesuffix("'>").rsplit(".", 1)[-1] if error_type else default
    if "timeout" in name.lower():
        name = "Timeout"
    return name, one_line(message) or f"{span['name']} failed"


# OpenInference span kinds (what Phoenix and the OpenInference instrumentations write) in GenAI terms.
_OPENINFERENCE = {"TOOL": "execute_tool", "LLM": "chat", "AGENT": "invoke_agent"}


def _operation(span: dict[str, Any]) -> str:
    attrs = span["attrs"]
    op = attrs.get("gen_ai.operation.name")
    if isinstance(op, str):
        return op
    kind = attrs.get("openinference.span.kind")
    if isinstance(kind, str) and kind.upper() in _OPENINFERENCE:
        return _OPENINFERENCE[kind.upper()]
    name = span["name"].split(" ", 1)[0]
    return name if name in _MODEL_CALLS or name in ("execute_tool", "invoke_agent") else ""


def _tool_args(attrs: dict[str, Any]) -> dict[str, Any]:
    raw = attrs.get("gen_ai.tool.call.arguments", attrs.get("tool.parameters", attrs.get("input.value")))
    if isinstance(raw, str):
        try:
            decoded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {"arguments": raw}
        return decoded if isinstance(decoded, dict) else {"arguments": decoded}
    return raw if isinstance(raw, dict) else {}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _first_user_text(calls: list[dict[str, Any]]) -> str | None:
    """The first user message of the first model call's ``gen_ai.input.messages`` (``[{role, parts: [{type: text,
    content}]}]``), for a trace whose agent span does not carry its input."""
    raw = calls[0]["attrs"].get("gen_ai.input.messages") if calls else None
    try:
        messages = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        return None
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("parts"), list):
            texts = [p.get("content") for p in message["parts"] if isinstance(p, dict) and p.get("type") == "text"]
            return "\n".join(t for t in texts if isinstance(t, str)) or None
    return None


def _episode(trace: str, spans: list[dict[str, Any]], origin: Origin) -> list[dict[str, Any]]:
    spans.sort(key=lambda s: (s["start"] or 0, s["end"] or 0))
    ids = {s["id"] for s in spans}
    roots = [s for s in spans if s["parent"] is None or s["parent"] not in ids]
    root = roots[0] if roots else spans[0]
    agent = next((s for s in spans if _operation(s) == "invoke_agent"), None)
    head = agent or root
    name = head["attrs"].get("gen_ai.conversation.id") or trace
    builder = EpisodeBuilder(origin, str(name), task_id=head["attrs"].get("gen_ai.agent.name") or head["service"])
    calls = [s for s in spans if _operation(s) in _MODEL_CALLS] + spans  # a model call's answer names it best
    models = (
        s["attrs"].get("gen_ai.response.model")
        or s["attrs"].get("gen_ai.request.model")
        or s["attrs"].get("llm.model_name")
        for s in calls
    )
    model = next((m for m in models if isinstance(m, str)), None)
    task = head["attrs"].get("gen_ai.prompt") or head["attrs"].get("gen_ai.input.messages")
    task = task or head["attrs"].get("input.value") or _first_user_text(calls)
    builder.start(
        task=_text(task),
        model=model if isinstance(model, str) else None,
        ts=head["start"] / 1e9 if head["start"] else None,
        line=head["line"],
        pointer=head["pointer"],
        trace_id=trace,
    )
    has_tools = any(_operation(s) == "execute_tool" for s in spans)
    last_model: dict[str, Any] | None = None
    for span in spans:
        op = _operation(span)
        attrs = span["attrs"]
        duration = (span["end"] - span["start"]) / 1e9 if span["start"] and span["end"] else None
        # a canonical record is stamped when it is written, after the action: the span's end
        ts = (span["end"] or span["start"]) / 1e9 if span["end"] or span["start"] else None
        if op in _MODEL_CALLS:
            last_model = span
            failure = _failure(span, "ConnectionError")
            if failure is None and has_tools:
                continue
            step = Step(
                action={"tool": "respond", "args": {}} if failure is None else None,
                raw_output=_text(attrs.get("gen_ai.completion") or attrs.get("gen_ai.output.messages")),
                latency_s=duration,
                ts=ts,
                line=span["line"],
                pointer=span["pointer"],
            )
            if failure is not None:
                step.fail(failure)
        elif op == "execute_tool":
            tool = attrs.get("gen_ai.tool.name") or attrs.get("tool.name")
            tool = str(tool or span["name"].removeprefix("execute_tool ").strip() or "?")
            result = attrs.get("gen_ai.tool.call.result", attrs.get("gen_ai.tool.output", attrs.get("output.value")))
            step = Step(
                action={"tool": tool, "args": _tool_args(attrs)},
                observation=_text(result),
                ts=ts,
                line=span["line"],
                pointer=span["pointer"],
            )
            if last_model is not None and last_model["start"] and last_model["end"]:
                step.latency_s = (last_model["end"] - last_model["start"]) / 1e9
            failure = _failure(span, "ToolError")
            if failure is not None:
                step.fail(failure)
                status = _EXIT_STATUS.search(failure[1])  # Python's CalledProcessError states it
                if status:
                    step.extra["exit_code"] = int(status.group(1))
            if isinstance(attrs.get("gen_ai.tool.call.id"), str):
                step.extra["tool_call_id"] = attrs["gen_ai.tool.call.id"]
        else:
            continue
        for key, field in _USAGE:
            source = span if op in _MODEL_CALLS else last_model
            value = source["attrs"].get(key) if source is not None else None
            if isinstance(value, int):
                step.extra[field] = value
        step.extra["span_id"] = span["id"]
        builder.tick(step)
    root_failure = _failure(root, "Fatal")
    end_ts = root["end"] / 1e9 if root["end"] else None
    if root_failure is not None:
        builder.end("death", reason=root_failure[1], error_class=root_failure[0], ts=end_ts, line=root["line"])
    else:
        builder.end("success", reason="trace ended; not graded", ts=end_ts, line=root["line"])
    return builder.records


def _records(by_trace: dict[str, list[dict[str, Any]]], origin: Origin) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for trace, spans in by_trace.items():
        records.extend(_episode(trace, spans, origin))
    return records


def convert(path: Path, doc: Any, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    bad: list[BadLine] = []
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in _spans(doc, "", origin.file, 1, bad):
        span["line"] = None
        by_trace[span["trace"]].append(span)
    return _records(by_trace, origin), bad


def convert_jsonl(path: Path, origin: Origin) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """One export request per line; spans of a trace may be spread over lines."""
    bad: list[BadLine] = []
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line, obj in good_records(path, bad.append):
        if not sniff_line(obj):
            keys = ", ".join(sorted(obj)[:6])
            reason = f"not an OTLP export request (keys: {keys}); skipped"
            bad.append(BadLine(file=origin.file, line=line, reason=reason))
            continue
        for span in _spans(obj, "", origin.file, line, bad):
            by_trace[span["trace"]].append(span)
    return _records(by_trace, origin), bad
