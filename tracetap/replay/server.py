"""`serve-sim`: an OpenAI-compatible server that generates no real text but behaves like a
serving engine in time and cache (block prefix cache, prefill/decode latency, batching).

Endpoints: POST /v1/completions (prompt as token ids or text), POST /v1/chat/completions
(message text counted one token per whitespace word), GET /v1/models, GET /health. Every
request generates exactly max_tokens tokens (as with ignore_eos): ids that depend only on the
prompt (as greedy decoding would), sent as `w<id>` words, and as ids in `token_ids` when the
request asks with `return_token_ids` (vLLM's field). Usage carries
prompt_tokens_details.cached_tokens: the prompt's leading full blocks found in the cache.

Like vLLM's and SGLang's prefix caches, a completed request leaves the full blocks of its prompt
and generated tokens in the cache: an agent's next prompt starts with this prompt and output, so
it hits them.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from tracetap.replay.prompts import words_to_ids
from tracetap.replay.simcache import BlockCache, PrefixCache, block_hashes

__all__ = ["SIM_KEY", "SimConfig", "SimServer", "make_app", "serve_sim"]


@dataclass(slots=True)
class SimConfig:
    """Latency model (seconds per token) and cache settings of serve-sim."""

    model: str = "serve-sim"
    block_size: int = 16
    capacity_blocks: int = 0
    policy: str = "lru"
    ttl: float | None = None
    prefill_per_token: float = 0.0
    decode_per_token: float = 0.0
    batch_slowdown: float = 0.0
    default_max_tokens: int = 16


class SimServer:
    """State of one serve-sim instance: the cache, active request count and counters."""

    def __init__(self, config: SimConfig, cache: PrefixCache | None = None) -> None:
        self.config = config
        self.cache: PrefixCache = cache or BlockCache(
            config.capacity_blocks, config.policy, config.ttl
        )
        self.active = 0
        self.requests = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0

    def _slowdown(self) -> float:
        return 1.0 + self.config.batch_slowdown * max(0, self.active - 1)

    def _admit(self, tokens: np.ndarray) -> tuple[int, list[bytes]]:
        """Look the prompt up and store it; returns the cached token count and its hashes."""
        now = time.monotonic()
        hashes = block_hashes(tokens, self.config.block_size)
        hit = self.cache.lookup(hashes, now)
        self.cache.insert(hashes, now)
        cached = hit * self.config.block_size
        self.requests += 1
        self.prompt_tokens += len(tokens)
        self.cached_tokens += cached
        return cached, hashes

    def _complete(self, tokens: np.ndarray, output: np.ndarray, hashes: list[bytes]) -> None:
        """Cache the full blocks of prompt + output once the request has completed."""
        full = np.concatenate([tokens, output])
        self.cache.insert(block_hashes(full, self.config.block_size, hashes), time.monotonic())

    async def handle(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
            tokens = _chat_tokens(body) if chat else _prompt_tokens(body)
            max_tokens = int(
                body.get("max_tokens")
                or body.get("max_completion_tokens")
                or self.config.default_max_tokens
            )
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
            return web.json_response(
                {"error": {"message": f"bad request: {exc}", "type": "invalid_request_error"}},
                status=400,
            )
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        cached, hashes = self._admit(tokens)
        output = _generate(tokens, max_tokens)
        words = [f"w{t} " for t in output.tolist()]
        token_ids = bool(body.get("return_token_ids")) and not chat
        usage = {
            "prompt_tokens": len(tokens),
            "completion_tokens": max_tokens,
            "total_tokens": len(tokens) + max_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.active += 1
        try:
            loop = asyncio.get_running_loop()
            t = (
                loop.time()
                + (len(tokens) - cached) * self.config.prefill_per_token * self._slowdown()
            )
            if not stream:
                t += max_tokens * self.config.decode_per_token * self._slowdown()
                await _sleep_until(loop, t)
                self._complete(tokens, output, hashes)
                full = _full(rid, self.config.model, chat, "".join(words), usage)
                if token_ids:
                    full["choices"][0]["token_ids"] = output.tolist()
                return web.json_response(full)
            resp: web.StreamResponse | None = None
            pending: list[bytes] = []
            for i in range(max_tokens):
                if i:
                    t += self.config.decode_per_token * self._slowdown()
                if t > loop.time():
                    if resp is None:
                        resp = web.StreamResponse(headers=_SSE)
                        await resp.prepare(request)
                    if pending:
                        await resp.write(b"".join(pending))
                        pending = []
                    await _sleep_until(loop, t)
                last = i == max_tokens - 1
                pending.append(
                    _chunk(
                        rid,
                        self.config.model,
                        chat,
                        words[i],
                        "length" if last else None,
                        int(output[i]) if token_ids else None,
                    )
                )
            if include_usage:
                pending.append(
                    b"data: "
                    + orjson.dumps(
                        {
                            "id": rid,
                            "object": _object(chat, True),
                            "model": self.config.model,
                            "choices": [],
                            "usage": usage,
                        }
                    )
                    + b"\n\n"
                )
            pending.append(b"data: [DONE]\n\n")
            self._complete(tokens, output, hashes)
            if resp is None:  # nothing to wait for: headers and the whole stream in one send
                return web.Response(body=b"".join(pending), headers=_SSE)
            await resp.write_eof(b"".join(pending))  # with the chunked terminator: one send
            return resp
        finally:
            self.active -= 1


SIM_KEY = web.AppKey("sim", SimServer)
_SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


def _prompt_tokens(body: dict[str, Any]) -> np.ndarray:
    prompt = body["prompt"]
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], list):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        prompt = " ".join(prompt)
    if isinstance(prompt, str):
        return np.asarray(words_to_ids(prompt), dtype=np.int64)
    return np.asarray(prompt, dtype=np.int64)


def _chat_tokens(body: dict[str, Any]) -> np.ndarray:
    ids: list[int] = []
    for message in body["messages"]:
        content = message.get("content") or ""
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        ids.extend(words_to_ids(content))
    return np.asarray(ids, dtype=np.int64)


def _object(chat: bool, stream: bool) -> str:
    if chat:
        return "chat.completion.chunk" if stream else "chat.completion"
    return "text_completion"


def _generate(tokens: np.ndarray, n: int) -> np.ndarray:
    """n output ids in [100, 32000) that depend only on the prompt, as greedy decoding's do."""
    if n <= 0:
        return np.empty(0, np.int64)
    seed = hashlib.blake2b(tokens.tobytes(), digest_size=16).digest()
    raw = hashlib.shake_128(seed).digest(4 * n)
    return (np.frombuffer(raw, dtype=np.uint32) % 31900).astype(np.int64) + 100


def _chunk(
    rid: str, model: str, chat: bool, text: str, finish: str | None, token_id: int | None = None
) -> bytes:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta"] = {"content": text}
    else:
        choice["text"] = text
    if token_id is not None:
        choice["token_ids"] = [token_id]
    return (
        b"data: "
        + orjson.dumps(
            {"id": rid, "object": _object(chat, True), "model": model, "choices": [choice]}
        )
        + b"\n\n"
    )


def _full(rid: str, model: str, chat: bool, text: str, usage: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "id": rid,
        "object": _object(chat, False),
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage,
    }


def make_app(server: SimServer) -> web.Application:
    """The aiohttp application serving `server`."""
    app = web.Application(client_max_size=1 << 30)

    async def completions(request: web.Request) -> web.StreamResponse:
        return await server.handle(request, chat=False)

    async def chat(request: web.Request) -> web.StreamResponse:
        return await server.handle(request, chat=True)

    async def models(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": server.config.model, "object": "model", "owned_by": "tracetap"}],
            }
        )

    async def health(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "requests": server.requests,
                "active": server.active,
                "prompt_tokens": server.prompt_tokens,
                "cached_tokens": server.cached_tokens,
            }
        )

    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app[SIM_KEY] = server
    return app


def serve_sim(
    config: SimConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve the simulated OpenAI-compatible API until interrupted; OSError if it cannot listen.
    `on_ready` is called once it listens.

    Example: serve_sim(SimConfig(capacity_blocks=100_000), port=8000)
    """

    def ready(*_: object) -> None:  # aiohttp's startup message, once the site listens
        if on_ready is not None:
            on_ready()

    web.run_app(
        make_app(SimServer(config)),
        host=host,
        port=port,
        access_log=None,
        print=ready,
        backlog=4096,
    )
