"""A local upstream that streams Anthropic-style SSE responses, for benchmarks.

`python bench/sse_upstream.py PORT`: POST /v1/messages streams `events` deltas `gap_ms` apart
(both from the request JSON: {"bench": {"events": 200, "gap_ms": 2, "bytes": 0}}); with
"bytes" > 0 it streams that many bytes of text deltas as fast as possible instead. "id" names
the message (default msg_bench).
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web


def _event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def messages(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    cfg = body.get("bench") or {}
    events, gap, total = (
        int(cfg.get("events", 200)),
        cfg.get("gap_ms", 2) / 1000,
        int(cfg.get("bytes", 0)),
    )
    resp = web.StreamResponse(
        headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
    )
    await resp.prepare(request)
    await resp.write(
        _event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": str(cfg.get("id", "msg_bench")),
                    "type": "message",
                    "role": "assistant",
                    "model": "bench",
                    "content": [],
                    "usage": {
                        "input_tokens": 10,
                        "cache_read_input_tokens": 90000,
                        "cache_creation_input_tokens": 500,
                        "output_tokens": 1,
                    },
                },
            },
        )
    )
    await resp.write(
        _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
    )
    if total:
        piece = "x" * 16000
        chunk = _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
        )
        sent = 0
        while sent < total:
            await resp.write(chunk)
            sent += len(chunk)
    else:
        for i in range(events):
            await resp.write(
                _event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": f"tok{i} "},
                    },
                )
            )
            if gap:
                await asyncio.sleep(gap)
    await resp.write(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    await resp.write(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": events},
            },
        )
    )
    await resp.write(_event("message_stop", {"type": "message_stop"}))
    await resp.write_eof()
    return resp


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/messages", messages)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
