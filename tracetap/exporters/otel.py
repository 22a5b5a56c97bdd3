"""`otel`: OpenTelemetry spans per the GenAI semantic conventions (a span per round, a child
span per tool call), as OTLP/JSON ExportTraceServiceRequest lines or POSTed to a collector.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from tracetap.exporters.mooncake import request_time
from tracetap.tracelab import parse_ts

__all__ = ["SCOPE", "export", "post_batches", "request_batches", "round_spans"]

SCOPE = {"name": "tracetap", "version": "1"}
_CLIENT, _INTERNAL = 3, 1
_PROVIDER_NAMES = {"claude": "anthropic", "codex": "openai", "openai": "openai"}
_OUTPUT_EVENTS = ("reasoning", "text", "tool_call", "usage_report")


def _hex_id(value: str, n_hex: int) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:n_hex]


def _nanos(t: float) -> str:
    return str(round(t * 1e6) * 1000)


def _value(v: object) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [_value(x) for x in v]}}
    return {"stringValue": str(v)}


def _attrs(pairs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in pairs.items() if v is not None]


def round_spans(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The round's span (CLIENT, `chat {model}`) and one INTERNAL `execute_tool` child per
    tool call. trace id = the session; span ids derive from trace_key and tool_call_id."""
    start = request_time(row)
    if start is None:
        return []
    stamps = [
        parse_ts(e.get("timestamp"))
        for e in row.get("timing_events") or []
        if e.get("event_type") in _OUTPUT_EVENTS
    ]
    end = max([s for s in stamps if s is not None], default=start)
    session = str(row.get("session_id"))
    trace_id = _hex_id(f"session:{session}", 32)
    span_id = _hex_id(f"round:{row.get('trace_key') or (session, row.get('round_index'))}", 16)
    provider = row.get("provider")
    model = row.get("model")
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": (
            _PROVIDER_NAMES.get(provider, provider) if provider is not None else None
        ),
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.response.id": row.get("round_id"),
        "gen_ai.conversation.id": session,
        "gen_ai.usage.input_tokens": row.get("input_tokens_total"),
        "gen_ai.usage.output_tokens": row.get("output_tokens"),
        "gen_ai.usage.cache_read.input_tokens": row.get("prefix_tokens"),
        "gen_ai.usage.cache_creation.input_tokens": row.get("claude_cache_creation_input_tokens"),
        "gen_ai.usage.reasoning.output_tokens": row.get("reasoning_output_tokens"),
        "tracetap.round_index": row.get("round_index"),
        "tracetap.turn_id": row.get("turn_id"),
        "tracetap.project": row.get("project"),
        "tracetap.newly_append_tokens": row.get("newly_append_tokens"),
        "tracetap.kind": row.get("tt_kind"),
        "tracetap.ttft_ms": row.get("tt_ttft_ms"),
        "tracetap.decode_ms": row.get("tt_decode_ms"),
    }
    spans = [
        {
            "traceId": trace_id,
            "spanId": span_id,
            "name": f"chat {model}",
            "kind": _CLIENT,
            "startTimeUnixNano": _nanos(start),
            "endTimeUnixNano": _nanos(max(end, start)),
            "attributes": _attrs(attrs),
            "status": {},
        }
    ]
    for tool in row.get("tools") or []:
        t0 = parse_ts(tool.get("emitted_at")) or end
        t1 = parse_ts(tool.get("result_at"))
        error = bool(tool.get("is_error"))
        spans.append(
            {
                "traceId": trace_id,
                "spanId": _hex_id(f"tool:{session}:{tool.get('tool_call_id')}:{span_id}", 16),
                "parentSpanId": span_id,
                "name": f"execute_tool {tool.get('tool_name')}",
                "kind": _INTERNAL,
                "startTimeUnixNano": _nanos(t0),
                "endTimeUnixNano": _nanos(max(t1, t0) if t1 is not None else t0),
                "attributes": _attrs(
                    {
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": tool.get("tool_name"),
                        "gen_ai.tool.call.id": tool.get("tool_call_id"),
                        "gen_ai.tool.type": "function",
                        "tracetap.tool.input_chars": tool.get("input_chars"),
                        "tracetap.tool.result_chars": tool.get("result_chars"),
                        "tracetap.tool.wall_latency_ms": tool.get("tool_wall_latency_ms"),
                        "tracetap.tool.internal_latency_ms": tool.get("tool_internal_latency_ms"),
                        "tracetap.tool.unanswered": True if t1 is None else None,
                    }
                ),
                "status": {"code": 2} if error else {},
            }
        )
    return spans


def request_batches(
    rows: Iterable[dict[str, Any]], *, spans_per_request: int = 2000, service_name: str = "tracetap"
) -> Iterator[tuple[dict[str, Any], int]]:
    """ExportTraceServiceRequest dicts of at most ~spans_per_request spans, with the number
    of rounds in each."""
    resource = {
        "attributes": _attrs({"service.name": service_name, "telemetry.sdk.name": "tracetap"})
    }
    spans: list[dict[str, Any]] = []
    n_rounds = 0

    def request() -> dict[str, Any]:
        return {
            "resourceSpans": [
                {"resource": resource, "scopeSpans": [{"scope": SCOPE, "spans": spans}]}
            ]
        }

    for row in rows:
        new = round_spans(row)
        if not new:
            continue
        spans.extend(new)
        n_rounds += 1
        if len(spans) >= spans_per_request:
            yield request(), n_rounds
            spans, n_rounds = [], 0
    if spans:
        yield request(), n_rounds


def export(rows: Iterable[dict[str, Any]], out: IO[str], *, spans_per_request: int = 2000) -> int:
    """Write OTLP/JSON lines (one ExportTraceServiceRequest per line, as the collector's file
    exporter writes them); returns the number of rounds exported."""
    total = 0
    for req, n in request_batches(rows, spans_per_request=spans_per_request):
        out.write(json.dumps(req, separators=(",", ":")) + "\n")
        total += n
    return total


def post_batches(
    rows: Iterable[dict[str, Any]],
    endpoint: str,
    *,
    spans_per_request: int = 2000,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """POST each request as OTLP/HTTP JSON to `endpoint`/v1/traces; returns rounds sent.
    Raises httpx.HTTPError on a transport error or a non-2xx answer."""
    import httpx

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    total = 0
    with httpx.Client(timeout=timeout) as client:
        for req, n in request_batches(rows, spans_per_request=spans_per_request):
            resp = client.post(
                url,
                content=json.dumps(req, separators=(",", ":")),
                headers={"Content-Type": "application/json", **(headers or {})},
            )
            resp.raise_for_status()
            total += n
            if on_batch:
                on_batch(n)
    return total
