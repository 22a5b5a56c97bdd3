"""otel: OTLP/JSON that the OTel proto JSON mapping accepts, GenAI attributes, POST to a
local collector."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.exporters.handmade import T0, two_sessions
from tracetap.exporters import otel


def _requests(rows: list[dict], **kw: Any) -> list[ExportTraceServiceRequest]:
    buf = io.StringIO()
    otel.export(rows, buf, **kw)
    return [
        json_format.Parse(line, ExportTraceServiceRequest()) for line in buf.getvalue().splitlines()
    ]


def _attrs(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind)
    return out


def test_spans_parse_with_the_otlp_proto_and_carry_genai_usage() -> None:
    (req,) = _requests(two_sessions())
    spans = list(req.resource_spans[0].scope_spans[0].spans)
    rounds = [s for s in spans if not s.parent_span_id]
    tools = [s for s in spans if s.parent_span_id]
    assert len(rounds) == 5 and len(tools) == 4
    first = rounds[0]
    assert first.name == "chat claude-test"
    assert first.kind == 3  # CLIENT
    assert first.start_time_unix_nano == int(T0 * 1e9)
    assert first.end_time_unix_nano == int((T0 + 1.0) * 1e9)
    a = _attrs(first)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.usage.input_tokens"] == 1000 and a["gen_ai.usage.output_tokens"] == 100
    assert a["gen_ai.usage.cache_read.input_tokens"] == 0
    assert a["gen_ai.conversation.id"] == "claude:s1"
    # one trace per session; tool spans are children of their round's span
    assert len({s.trace_id for s in rounds[:3]}) == 1
    assert rounds[0].trace_id != rounds[3].trace_id
    bash = tools[0]
    assert bash.parent_span_id == first.span_id and bash.trace_id == first.trace_id
    assert bash.name == "execute_tool Bash"
    assert bash.end_time_unix_nano - bash.start_time_unix_nano == 700_000_000
    assert _attrs(bash)["gen_ai.tool.call.id"] == "toolu_s100"
    assert len({s.span_id for s in spans}) == len(spans)


def test_requests_are_split_by_span_count() -> None:
    reqs = _requests(two_sessions(), spans_per_request=3)
    assert sum(len(r.resource_spans[0].scope_spans[0].spans) for r in reqs) == 9
    assert len(reqs) > 1


def test_post_to_a_local_collector() -> None:
    received: list[dict] = []

    async def handler(request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        received.append(await request.json())
        return web.json_response({})

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/traces", handler)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        n = otel.post_batches(two_sessions(), f"http://127.0.0.1:{port}", spans_per_request=4)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()
    assert n == 5
    spans = [
        s
        for req in received
        for s in json_format.Parse(json.dumps(req), ExportTraceServiceRequest())
        .resource_spans[0]
        .scope_spans[0]
        .spans
    ]
    assert len(spans) == 9 and len(received) >= 2
