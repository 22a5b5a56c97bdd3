"""serve-sim on its own: OpenAI-shaped responses, cached_tokens from the block cache, the
latency model (prefill per uncached token, decode per token, batching slowdown), eviction."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from tracetap.replay.server import SimConfig

from .simserver import sim


async def _post(http: aiohttp.ClientSession, url: str, body: dict) -> tuple[dict, float]:
    t = time.perf_counter()
    async with http.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        data = await resp.json()
    return data, time.perf_counter() - t


def test_completions_report_cached_prefix_blocks() -> None:
    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=16)) as (url, server), aiohttp.ClientSession() as h:
            a, _ = await _post(
                h, url + "/completions", {"prompt": list(range(100)), "max_tokens": 3}
            )
            b, _ = await _post(
                h, url + "/completions", {"prompt": list(range(90)) + [7] * 20, "max_tokens": 2}
            )
            c, _ = await _post(
                h,
                url + "/chat/completions",
                {"messages": [{"role": "user", "content": "w1 w2 w3 hello"}], "max_tokens": 1},
            )
            async with h.post(url + "/completions", json={"max_tokens": 1}) as bad:
                status = bad.status
            return a, b, c, status, server

    a, b, c, status, server = asyncio.run(go())
    assert a["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 3,
        "total_tokens": 103,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert a["choices"][0]["finish_reason"] == "length" and a["object"] == "text_completion"
    assert b["usage"]["prompt_tokens_details"]["cached_tokens"] == 80  # 5 full blocks < 90
    assert c["usage"]["prompt_tokens"] == 4 and c["choices"][0]["message"]["role"] == "assistant"
    assert status == 400 and server.requests == 3


def test_latency_model_prefill_decode_and_batching() -> None:
    cfg = SimConfig(block_size=16, prefill_per_token=0.0005, decode_per_token=0.01)

    async def go():  # type: ignore[no-untyped-def]
        async with sim(cfg) as (url, _), aiohttp.ClientSession() as h:
            body = {"prompt": list(range(200)), "max_tokens": 1}
            _, cold = await _post(h, url + "/completions", body)  # 200 uncached: 100 ms
            _, warm = await _post(h, url + "/completions", body)  # 8 uncached: 4 ms
            _, decode = await _post(
                h, url + "/completions", {"prompt": list(range(200)), "max_tokens": 11}
            )
            return cold, warm, decode

    cold, warm, decode = asyncio.run(go())
    assert 0.095 < cold < 0.15 and warm < 0.04
    assert 0.09 < decode - warm < 0.16  # 10 more tokens at 10 ms, ± noise

    slow = SimConfig(block_size=16, decode_per_token=0.01, batch_slowdown=1.0)

    async def batch():  # type: ignore[no-untyped-def]
        async with sim(slow) as (url, _), aiohttp.ClientSession() as h:
            _, alone = await _post(h, url + "/completions", {"prompt": [1], "max_tokens": 11})
            pair = await asyncio.gather(
                *(_post(h, url + "/completions", {"prompt": [i], "max_tokens": 11}) for i in (2, 3))
            )
            return alone, max(t for _, t in pair)

    alone, together = asyncio.run(batch())
    assert 0.09 < alone < 0.15 and together > 1.6 * alone  # two active: each step 2x


def test_capacity_evicts_least_recently_used() -> None:
    async def go():  # type: ignore[no-untyped-def]
        async with (
            sim(SimConfig(block_size=4, capacity_blocks=4)) as (url, _),
            aiohttp.ClientSession() as h,
        ):
            p = f"{url}/completions"
            await _post(h, p, {"prompt": list(range(16)), "max_tokens": 1})
            hit, _ = await _post(h, p, {"prompt": list(range(16)), "max_tokens": 1})
            await _post(h, p, {"prompt": list(range(100, 116)), "max_tokens": 1})
            gone, _ = await _post(h, p, {"prompt": list(range(16)), "max_tokens": 1})
            return hit, gone

    hit, gone = asyncio.run(go())
    assert hit["usage"]["prompt_tokens_details"]["cached_tokens"] == 16
    assert gone["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_streams_same_events_in_one_piece_or_timed() -> None:
    """Nothing to wait for: headers and the whole stream in one send (Content-Length); with a
    decode time: chunked, pieces as tokens come. The events are the same either way."""
    body = {
        "prompt": list(range(40)),
        "max_tokens": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    async def stream(cfg: SimConfig):  # type: ignore[no-untyped-def]
        async with (
            sim(cfg) as (url, _),
            aiohttp.ClientSession() as h,
            h.post(url + "/completions", json=body) as resp,
        ):
            pieces = [piece async for piece in resp.content.iter_any()]
            return resp.headers, b"".join(pieces)

    def events(raw: bytes) -> list[dict]:
        out = [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e]
        assert out[-1] == b"[DONE]"
        return [{k: v for k, v in json.loads(e).items() if k != "id"} for e in out[:-1]]

    whole_headers, whole = asyncio.run(stream(SimConfig(block_size=16)))
    timed_headers, timed = asyncio.run(stream(SimConfig(block_size=16, decode_per_token=0.005)))
    assert whole_headers["Content-Length"] == str(len(whole))
    assert timed_headers["Transfer-Encoding"] == "chunked"
    for headers in (whole_headers, timed_headers):
        assert headers["Content-Type"].startswith("text/event-stream")
    assert events(whole) == events(timed) and len(events(whole)) == 4  # 3 tokens, usage
