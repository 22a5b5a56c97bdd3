"""A scripted model API upstream that speaks the providers' real wire formats, for tests.

Anthropic Messages (SSE and JSON, count_tokens), OpenAI Responses (SSE) and Chat Completions
(SSE and JSON). The main agent loop follows a script: one tool call, then two parallel calls,
then a final answer. It records every request and the exact bytes it sent, and can inject
faults (error mid-stream, HTTP errors, a stream cut in several ways, slow decoding).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest
from aiohttp import WSMsgType, web

from tracetap.wire.decoding import decode_body

__all__ = [
    "Recorded",
    "ScriptedUpstream",
    "ThreadedUpstream",
    "anthropic_step",
    "responses_step",
    "self_signed",
]

FINAL_TEXT = "All done: both commands ran."
SUBAGENT_TASK = "SUBAGENT-TASK: write sub.txt with the word sub."
COMPACT_SUMMARY = "<summary>The user asked for several things; all were answered.</summary>"
COMPACTION_MARKERS = (
    "create a detailed summary of the conversation",
    "your task is to create a detailed summary",
    "context checkpoint compaction",
)
# a long answer (400 words): at the slow pace it streams for about 16 s
SLOW_TEXT = " ".join(f"word{i:03d}" for i in range(400))


def _is_compaction(body: dict[str, Any]) -> bool:
    return any(m in json.dumps(body.get("messages"))[-20000:].lower() for m in COMPACTION_MARKERS)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    at: float
    sent: list[tuple[float, bytes]] = field(default_factory=list)  # what the upstream wrote
    usage: dict[str, Any] = field(default_factory=dict)  # usage it reported
    tool_calls: list[tuple[str, str, Any]] = field(default_factory=list)  # (id, name, input)

    @property
    def sent_bytes(self) -> bytes:
        return b"".join(chunk for _, chunk in self.sent)


_CUTS = {"cut", "eof", "close", "reset"}


def _sse(name: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {payload}\n\n".encode()


def _compress_stream(events: list[bytes], encoding: str) -> list[bytes]:
    """The same events as one compressed stream, flushed per event (as servers do)."""
    if encoding == "gzip":
        import zlib

        gz = zlib.compressobj(wbits=31)
        out = [gz.compress(e) + gz.flush(zlib.Z_SYNC_FLUSH) for e in events]
        return out + [gz.flush()]
    if encoding == "br":
        import brotli

        br = brotli.Compressor()
        out = [br.process(e) + br.flush() for e in events]
        return out + [br.finish()]
    import zstandard

    zc = zstandard.ZstdCompressor().compressobj()
    out = [zc.compress(e) + zc.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) for e in events]
    return out + [zc.flush()]


def _cwd(text: str) -> str | None:
    m = re.search(r"(?:Primary working directory|Working directory):\s*(\S+)", text) or re.search(
        r"<cwd>([^<]+)</cwd>", text
    )
    return m.group(1) if m else None


def anthropic_step(body: dict[str, Any]) -> int:
    """0-based step of the main loop: how many assistant turns with tool calls came before."""
    return sum(
        1
        for m in body.get("messages", [])
        if m.get("role") == "assistant"
        and isinstance(m.get("content"), list)
        and any(b.get("type") == "tool_use" for b in m["content"])
    )


def responses_step(body: dict[str, Any]) -> int:
    """0-based step: how many batches of function calls the conversation already holds."""
    steps, previous_was_call = 0, False
    for item in body.get("input") or []:
        is_call = isinstance(item, dict) and item.get("type") == "function_call"
        if is_call and not previous_was_call:
            steps += 1
        previous_was_call = is_call or (
            isinstance(item, dict) and item.get("type") == "reasoning" and previous_was_call
        )
    return steps


def self_signed(directory: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate (PEM) for `hosts` and 127.0.0.1, and its key, in directory."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "upstream.pem", directory / "upstream.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _interactive_responses_text(body: dict[str, Any]) -> str | None:
    """A Codex TUI turn's answer (None: the scripted tool loop goes on): the summary for a
    compaction, SLOW_TEXT for a turn that says `slow`, else `Noted: <typed>.` for every
    turn after the first (the first runs the tool loop)."""
    items = [i for i in body.get("input") or [] if isinstance(i, dict)]
    if any(m in json.dumps(items[-1:]).lower() for m in COMPACTION_MARKERS):
        return COMPACT_SUMMARY
    if not body.get("tools"):  # a title or other request beside the turn
        return "Short answer."
    typed = [
        c.get("text", "")
        for i in items
        if i.get("type") == "message" and i.get("role") == "user"
        for c in i.get("content") or []
        if isinstance(c, dict) and not c.get("text", "").lstrip().startswith("<")
    ]
    if not items or items[-1].get("type") != "message" or len(typed) < 2:
        return None
    if "slow" in typed[-1].split():
        return SLOW_TEXT
    return f"Noted: {typed[-1].strip()}."


class ThreadedUpstream:
    """An aiohttp server on 127.0.0.1 in a background thread with its own event loop; every
    request goes to `_handle`, its body kept as sent (compressed ones too: tests compare raw
    bytes)."""

    client_max_size = 256 * 1024 * 1024

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.tls: tuple[Path, Path] | None = None  # (certificate, key): serve HTTPS

    def with_tls(self, cert: Path, key: Path) -> Self:
        """Serve HTTPS with this certificate (call before `start`)."""
        self.tls = (cert, key)
        return self

    def start(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=self.client_max_size)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        ctx = None
        if self.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*self.tls)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError


class ScriptedUpstream(ThreadedUpstream):
    """The scripted model API, running as a `ThreadedUpstream`."""

    def __init__(self, *, gap: float = 0.002) -> None:
        self.gap = gap
        self.requests: list[Recorded] = []
        self._ids = itertools.count(1)  # never reset: response ids stay unique
        self._resp_steps: dict[str, int] = {}  # response id -> script step it answered
        # error_midstream | http_529 | slow, or a stream cut after `cut_after` events (half of
        # them when None): cut (the connection closes inside the chunked body), eof (the
        # response ends cleanly), close (a response framed by the connection's end, then a
        # clean close), reset (a TCP reset once the events were read)
        self.fault: str | None = None
        self.cut_after: int | None = None
        self.pad = 0  # characters added to the first word of an Anthropic text block
        self.response_encoding: str | None = None  # gzip | br | zstd: compress the stream
        self.scenario = "tools"  # tools: 1 call, 2 parallel, answer | subagent: via Agent
        self.fault_once = True
        # events of types no API documents (a newer API version), sent right after the
        # first event of every stream: {"type": ..., ...} objects
        self.inject: list[dict[str, Any]] = []
        self.long_steps = 150  # scenario "long": tool calls before the answer
        self.long_done = 0
        self.usage_scale = 1  # reported input tokens = this × the request's bytes / 4
        super().__init__()

    def reset(self) -> None:
        self.requests.clear()
        self.inject = []
        self.fault = None
        self.cut_after = None
        self.pad = 0

    def main_loop(self, path_part: str) -> list[Recorded]:
        """Requests of the scripted main loop (they carry tools) on one endpoint."""
        return [
            r
            for r in self.requests
            if path_part in r.path
            and isinstance(r.body, dict)
            and r.body.get("tools")
            and not r.path.endswith("count_tokens")
        ]

    # -- dispatch -----------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("upgrade", "").lower() == "websocket":
            if request.path.rstrip("/").endswith("/responses"):
                return await self._responses_ws(request)
        raw = await request.read()
        try:
            body = (
                json.loads(decode_body(raw, request.headers.get("content-encoding")))
                if raw
                else None
            )
        except ValueError:
            body = None
        rec = Recorded(
            request.method, request.path_qs, dict(request.headers), body, raw, time.time()
        )
        self.requests.append(rec)
        resp = await self._respond(request, rec, raw)
        if not rec.sent and isinstance(resp, web.Response) and isinstance(resp.body, bytes):
            rec.sent.append((time.time(), resp.body))  # a whole body, as the client gets it
        return resp

    async def _respond(self, request: web.Request, rec: Recorded, raw: bytes) -> web.StreamResponse:
        path = request.path.rstrip("/")
        fault = self.fault
        if fault and self.fault_once:
            self.fault = None
        if fault == "http_529":
            return web.json_response(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                status=529,
                headers={"retry-after": "0"},
            )
        if path.endswith("/v1/messages/count_tokens"):
            return web.json_response({"input_tokens": len(raw) // 4})
        if path.endswith("/v1/messages") and request.method == "POST":
            return await self._anthropic(request, rec, fault)
        if path.endswith("/responses") and request.method == "POST":
            return await self._responses(request, rec, fault)
        if path.endswith("/chat/completions") and request.method == "POST":
            return await self._chat(request, rec, fault)
        if path.endswith("/models"):
            return web.json_response({"object": "list", "data": []})
        return web.json_response(
            {
                "type": "error",
                "error": {"type": "not_found_error", "message": f"no route for {request.path}"},
            },
            status=404,
        )

    async def _stream(
        self, request: web.Request, rec: Recorded, events: list[bytes], fault: str | None
    ) -> web.StreamResponse:
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "request-id": f"req_{len(self.requests)}",
        }
        if self.response_encoding:
            headers["content-encoding"] = self.response_encoding
            events = _compress_stream(events, self.response_encoding)
        resp = web.StreamResponse(headers=headers)
        if fault == "close":  # no content-length, not chunked: the body ends with the connection
            resp._length_check = False
            resp.force_close()
        await resp.prepare(request)
        cut_at = len(events) // 2 if self.cut_after is None else self.cut_after
        try:
            for i, chunk in enumerate(events):
                if fault in _CUTS and i == cut_at:
                    await self._cut(request, resp, fault)
                    return resp
                rec.sent.append((time.time(), chunk))
                await resp.write(chunk)
                await asyncio.sleep(self.gap * (20 if fault == "slow" else 1))
            await resp.write_eof()
        except ConnectionError:  # the client went away (Codex closes after the last event)
            pass
        return resp

    async def _cut(self, request: web.Request, resp: web.StreamResponse, fault: str) -> None:
        """End a stream before its last events as `fault` says (see `fault`)."""
        transport = request.transport
        if fault == "eof":
            await resp.write_eof()
            return
        if transport is None:
            return
        if fault == "reset":
            # let the proxy read what was sent: a reset discards data the peer has not read
            await asyncio.sleep(0.2)
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            return
        transport.close()  # cut, close: the upstream closes the connection mid-stream

    # -- Anthropic ----------------------------------------------------------------------
    def _subagent_plan(
        self, body: dict[str, Any], tools: set[str]
    ) -> tuple[list[dict[str, Any]], str]:
        """Main loop delegates to a subagent (Agent tool), which runs one command."""
        step = anthropic_step(body)
        first = json.dumps((body.get("messages") or [{}])[0].get("content"))
        if SUBAGENT_TASK in first:  # the subagent's own fresh conversation
            if step == 0:
                return [
                    {
                        "type": "tool_use",
                        "id": "toolu_SUB1BASH",
                        "name": "Bash",
                        "input": {
                            "command": "echo sub | tee sub.txt",
                            "description": "Subagent work",
                        },
                    }
                ], "tool_use"
            return [{"type": "text", "text": "Subagent finished: sub.txt written."}], "end_turn"
        if step == 0 and "Agent" in tools:
            return [
                {"type": "text", "text": "Delegating."},
                {
                    "type": "tool_use",
                    "id": "toolu_MAIN1AGENT",
                    "name": "Agent",
                    "input": {
                        "description": "Write sub.txt",
                        "prompt": SUBAGENT_TASK,
                        "subagent_type": "general-purpose",
                    },
                },
            ], "tool_use"
        return [{"type": "text", "text": FINAL_TEXT}], "end_turn"

    def _interactive_plan(
        self, body: dict[str, Any], tools: set[str]
    ) -> tuple[list[dict[str, Any]], str]:
        """A person's turns in the TUI, chosen by a word of what they typed: `run` one
        command, `slow` a long answer (streamed slowly, see `slow_turn`), `delegate` to a
        subagent; a compaction request gets a summary; anything else a short answer."""
        messages = body.get("messages") or []
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        content = users[-1].get("content") if users else None
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        texts = [b.get("text") or "" for b in blocks if isinstance(b, dict)]
        typed = next((t for t in reversed(texts) if not t.lstrip().startswith("<")), "")
        if any(m in " ".join(texts).lower() for m in COMPACTION_MARKERS):
            return [{"type": "text", "text": COMPACT_SUMMARY}], "end_turn"
        first = json.dumps((messages or [{}])[0].get("content"))
        if SUBAGENT_TASK in first:
            return self._subagent_plan(body, tools)
        if any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks):
            return [{"type": "text", "text": "Done: the command ran."}], "end_turn"
        if "delegate" in typed.split() and "Agent" in tools:
            return [
                {"type": "text", "text": "Delegating."},
                {
                    "type": "tool_use",
                    "id": f"toolu_AGENT{len(messages):04d}",
                    "name": "Agent",
                    "input": {
                        "description": "Write sub.txt",
                        "prompt": SUBAGENT_TASK,
                        "subagent_type": "general-purpose",
                    },
                },
            ], "tool_use"
        if "run" in typed.split():
            return [
                {"type": "text", "text": "Running it."},
                {
                    "type": "tool_use",
                    "id": f"toolu_RUN{len(messages):04d}",
                    "name": "Bash",
                    "input": {"command": "echo ran | tee ran.txt", "description": "Run"},
                },
            ], "tool_use"
        if "slow" in typed.split():
            return [{"type": "text", "text": SLOW_TEXT}], "end_turn"
        return [{"type": "text", "text": f"Noted: {typed.strip()}."}], "end_turn"

    def _long_plan(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """`long_steps` Bash calls one after the other (each prints ~2 KB of new text), then an
        answer; a compaction request gets a summary."""
        if _is_compaction(body):
            return [{"type": "text", "text": COMPACT_SUMMARY}], "end_turn"
        self.long_done += 1
        if self.long_done > self.long_steps:
            return [{"type": "text", "text": FINAL_TEXT}], "end_turn"
        n = self.long_done
        command = f"seq -f 'step {n:03d}: build line %g finished' 1 60"
        return [
            {"type": "text", "text": f"Step {n}."},
            {
                "type": "tool_use",
                "id": f"toolu_LONG{n:04d}",
                "name": "Bash",
                "input": {"command": command, "description": f"Step {n}"},
            },
        ], "tool_use"

    def _anthropic_plan(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        tools = {t.get("name") for t in body.get("tools") or []}
        if self.scenario == "interactive" and (tools or _is_compaction(body)):
            return self._interactive_plan(body, tools)
        if self.scenario == "long" and (tools or _is_compaction(body)):
            return self._long_plan(body)
        if not tools or "Bash" not in tools:
            return [{"type": "text", "text": "Short answer."}], "end_turn"
        if self.scenario == "subagent":
            return self._subagent_plan(body, tools)
        step = anthropic_step(body)
        cwd = _cwd(json.dumps(body.get("system"))) or "."
        if step == 0:
            return [
                {
                    "type": "thinking",
                    "thinking": "I should run a command first.",
                    "signature": "c2lnbmF0dXJlLTE=",
                },
                {"type": "text", "text": "Running one command."},
                {
                    "type": "tool_use",
                    "id": "toolu_01STEP1ONE",
                    "name": "Bash",
                    "input": {"command": "echo one | tee one.txt", "description": "Write one"},
                },
            ], "tool_use"
        if step == 1:
            read = (
                {
                    "type": "tool_use",
                    "id": "toolu_02STEP2READ",
                    "name": "Read",
                    "input": {"file_path": f"{cwd}/one.txt"},
                }
                if "Read" in tools
                else {
                    "type": "tool_use",
                    "id": "toolu_02STEP2READ",
                    "name": "Bash",
                    "input": {"command": "cat one.txt", "description": "Read one"},
                }
            )
            return [
                {"type": "text", "text": "Now two at once."},
                {
                    "type": "tool_use",
                    "id": "toolu_02STEP2BASH",
                    "name": "Bash",
                    "input": {
                        "command": "echo two > two.txt && echo two",
                        "description": "Write two",
                    },
                },
                read,
            ], "tool_use"
        return [{"type": "text", "text": FINAL_TEXT}], "end_turn"

    def _anthropic_usage(self, body: dict[str, Any], output: int) -> dict[str, Any]:
        total = max(10, len(json.dumps(body)) // 4 * self.usage_scale)
        step = anthropic_step(body)
        read = 0 if step == 0 else total * 8 // 10
        create = total - read - 3
        return {
            "input_tokens": 3,
            "cache_creation_input_tokens": create,
            "cache_read_input_tokens": read,
            "output_tokens": output,
            "cache_creation": {"ephemeral_5m_input_tokens": create, "ephemeral_1h_input_tokens": 0},
            "service_tier": "standard",
        }

    async def _anthropic(
        self, request: web.Request, rec: Recorded, fault: str | None
    ) -> web.StreamResponse:
        body = rec.body if isinstance(rec.body, dict) else {}
        blocks, stop = self._anthropic_plan(body)
        model = body.get("model", "claude-test")
        msg_id = f"msg_{next(self._ids):02d}SCRIPTED{anthropic_step(body)}"
        output = 17 + 9 * len(blocks)
        usage = self._anthropic_usage(body, output)
        rec.usage = usage
        rec.tool_calls = [
            (b["id"], b["name"], b["input"]) for b in blocks if b["type"] == "tool_use"
        ]
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": blocks,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": usage,
                },
                headers={"request-id": f"req_{len(self.requests)}"},
            )
        start_usage = dict(usage, output_tokens=1)
        events = [
            _sse(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
        ]
        events += [_sse(e["type"], e) for e in self.inject]
        for i, b in enumerate(blocks):
            if i == 1:
                events.append(_sse("ping", {"type": "ping"}))
            if b["type"] == "thinking":
                events.append(
                    _sse(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": i,
                            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                        },
                    )
                )
                events.append(
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "thinking_delta", "thinking": b["thinking"]},
                        },
                    )
                )
                events.append(
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "signature_delta", "signature": b["signature"]},
                        },
                    )
                )
            elif b["type"] == "text":
                events.append(
                    _sse(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": i,
                            "content_block": {"type": "text", "text": ""},
                        },
                    )
                )
                words = b["text"].split(" ")
                words[0] += "x" * self.pad  # one event as large as a test needs
                for j, w in enumerate(words):
                    events.append(
                        _sse(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": i,
                                "delta": {
                                    "type": "text_delta",
                                    "text": w + (" " if j < len(words) - 1 else ""),
                                },
                            },
                        )
                    )
                    if fault == "error_midstream" and j == 0:
                        events.append(
                            _sse(
                                "error",
                                {
                                    "type": "error",
                                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                                },
                            )
                        )
                        return await self._stream(request, rec, events, None)
            else:
                events.append(
                    _sse(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": i,
                            "content_block": {
                                "type": "tool_use",
                                "id": b["id"],
                                "name": b["name"],
                                "input": {},
                            },
                        },
                    )
                )
                args = json.dumps(b["input"])
                cut = len(args) // 2
                for part in (args[:cut], args[cut:]):
                    events.append(
                        _sse(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": i,
                                "delta": {"type": "input_json_delta", "partial_json": part},
                            },
                        )
                    )
            events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": output},
                },
            )
        )
        events.append(_sse("message_stop", {"type": "message_stop"}))
        if any(b.get("text") == SLOW_TEXT for b in blocks):
            fault = fault or "slow"
        return await self._stream(request, rec, events, fault)

    # -- OpenAI Responses ---------------------------------------------------------------
    def _responses_plan(self, body: dict[str, Any], step: int) -> list[dict[str, Any]]:
        tools = {t.get("name") for t in body.get("tools") or []}
        shell = next((n for n in ("exec_command", "shell", "local_shell") if n in tools), None)
        if body.get("generate") is False:  # Codex's cache prewarm: no output at all
            return []
        if self.scenario == "interactive":
            said = _interactive_responses_text(body)
            if said is not None:
                return [
                    {
                        "type": "message",
                        "id": f"msg_said{next(self._ids)}",
                        "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": said, "annotations": []}],
                    }
                ]

        def call(call_id: str, cmd: str) -> dict[str, Any]:
            args = {"cmd": cmd} if shell == "exec_command" else {"command": ["bash", "-lc", cmd]}
            return {
                "type": "function_call",
                "id": f"fc_{call_id}",
                "call_id": call_id,
                "name": shell,
                "arguments": json.dumps(args),
                "status": "completed",
            }

        reasoning = {
            "type": "reasoning",
            "id": f"rs_{step}",
            "summary": [{"type": "summary_text", "text": f"Step {step}."}],
            "encrypted_content": "enc",
        }
        if shell and step == 0:
            return [reasoning, call("call_STEP1one", "echo one | tee one.txt")]
        if shell and step == 1:
            return [
                reasoning,
                call("call_STEP2two", "echo two > two.txt && echo two"),
                call("call_STEP2cat", "cat one.txt"),
            ]
        text = FINAL_TEXT if shell else "Short answer."
        return [
            {
                "type": "message",
                "id": f"msg_final{step}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]

    def _responses_events(
        self, rec: Recorded, body: dict[str, Any], fault: str | None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The Responses stream as event objects (SSE data or WebSocket frames), and the
        final response object."""
        # Over a WebSocket Codex sends only new input plus previous_response_id: the step then
        # follows the chain of responses.
        prev = body.get("previous_response_id")
        if prev in self._resp_steps and self._resp_steps[prev] >= 0:
            step = self._resp_steps[prev] + 1
        else:
            step = responses_step(body)
        items = self._responses_plan(body, step)
        total = max(10, len(rec.raw) // 4)
        cached = 0 if step == 0 else (total * 8 // 10) // 128 * 128
        usage = {
            "input_tokens": total,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": 40 + 10 * len(items),
            "output_tokens_details": {"reasoning_tokens": 12},
            "total_tokens": 0,
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        rec.usage = usage
        rec.tool_calls = [
            (i["call_id"], i["name"], i["arguments"]) for i in items if i["type"] == "function_call"
        ]
        resp_id = f"resp_{next(self._ids):02d}scripted"
        base = {
            "id": resp_id,
            "object": "response",
            "created_at": int(time.time()),
            "model": body.get("model", "gpt-test"),
            "output": [],
            "usage": None,
            "status": "in_progress",
        }
        final = dict(base, status="completed", output=items, usage=usage)
        self._resp_steps[resp_id] = -1 if body.get("generate") is False else step
        events: list[dict[str, Any]] = []

        def emit(name: str, data: dict[str, Any]) -> None:
            events.append(dict(type=name, **data, sequence_number=len(events)))

        emit("response.created", {"response": base})
        for extra in self.inject:
            emit(extra["type"], {k: v for k, v in extra.items() if k != "type"})
        emit("response.in_progress", {"response": base})
        for idx, item in enumerate(items):
            if item["type"] == "reasoning":
                emit(
                    "response.output_item.added",
                    {"output_index": idx, "item": dict(item, summary=[])},
                )
                emit(
                    "response.reasoning_summary_text.delta",
                    {
                        "item_id": item["id"],
                        "output_index": idx,
                        "summary_index": 0,
                        "delta": item["summary"][0]["text"],
                    },
                )
            elif item["type"] == "function_call":
                emit(
                    "response.output_item.added",
                    {"output_index": idx, "item": dict(item, arguments="", status="in_progress")},
                )
                args = item["arguments"]
                for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                    emit(
                        "response.function_call_arguments.delta",
                        {"item_id": item["id"], "output_index": idx, "delta": part},
                    )
                emit(
                    "response.function_call_arguments.done",
                    {"item_id": item["id"], "output_index": idx, "arguments": args},
                )
            else:
                emit(
                    "response.output_item.added",
                    {"output_index": idx, "item": dict(item, content=[], status="in_progress")},
                )
                text = item["content"][0]["text"]
                for word in text.split(" "):
                    emit(
                        "response.output_text.delta",
                        {
                            "item_id": item["id"],
                            "output_index": idx,
                            "content_index": 0,
                            "delta": word + " ",
                        },
                    )
                if fault == "error_midstream":
                    emit(
                        "response.failed",
                        {
                            "response": dict(
                                base,
                                status="failed",
                                error={
                                    "code": "server_error",
                                    "message": "The server had an error",
                                },
                            )
                        },
                    )
                    return events, final
                emit(
                    "response.output_text.done",
                    {"item_id": item["id"], "output_index": idx, "content_index": 0, "text": text},
                )
            emit("response.output_item.done", {"output_index": idx, "item": item})
        emit("response.completed", {"response": final})
        return events, final

    async def _responses(
        self, request: web.Request, rec: Recorded, fault: str | None
    ) -> web.StreamResponse:
        body = rec.body if isinstance(rec.body, dict) else {}
        events, final = self._responses_events(rec, body, fault)
        if not body.get("stream"):
            return web.json_response(final)
        chunks = [_sse(e["type"], e) for e in events]
        if SLOW_TEXT in json.dumps(final.get("output")):
            fault = fault or "slow"
        return await self._stream(
            request, rec, chunks, None if fault == "error_midstream" else fault
        )

    async def _responses_ws(self, request: web.Request) -> web.WebSocketResponse:
        """Responses over a WebSocket: `response.create` in, the same events out as frames."""
        ws = web.WebSocketResponse(max_msg_size=256 * 1024 * 1024)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data.get("type") != "response.create":
                continue
            body = {k: v for k, v in data.items() if k != "type"}
            if isinstance(body.get("response"), dict):
                body = body["response"]
            rec = Recorded(
                "WS", request.path_qs, dict(request.headers), body, msg.data.encode(), time.time()
            )
            self.requests.append(rec)
            events, _ = self._responses_events(rec, body, None)
            for event in events:
                frame = json.dumps(event, separators=(",", ":"))
                rec.sent.append((time.time(), frame.encode()))
                await ws.send_str(frame)
                await asyncio.sleep(self.gap)
        return ws

    # -- OpenAI Chat Completions --------------------------------------------------------
    async def _chat(
        self, request: web.Request, rec: Recorded, fault: str | None
    ) -> web.StreamResponse:
        body = rec.body if isinstance(rec.body, dict) else {}
        tools = [t["function"]["name"] for t in body.get("tools") or [] if "function" in t]
        turns = sum(
            1
            for m in body.get("messages", [])
            if m.get("role") == "assistant" and m.get("tool_calls")
        )
        calls = []
        if tools and turns == 0:
            calls = [
                {"id": "call_chat_a", "name": tools[0], "arguments": '{"x": 1}'},
                {"id": "call_chat_b", "name": tools[-1], "arguments": '{"y": 2}'},
            ]
        text = "Calling tools." if calls else FINAL_TEXT
        total = max(10, len(rec.raw) // 4)
        usage = {
            "prompt_tokens": total,
            "completion_tokens": 25,
            "total_tokens": total + 25,
            "prompt_tokens_details": {"cached_tokens": 0 if turns == 0 else total // 2},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        rec.usage = usage
        rec.tool_calls = [(c["id"], c["name"], c["arguments"]) for c in calls]
        cid, model = f"chatcmpl-{next(self._ids)}", body.get("model", "gpt-test")
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                message["tool_calls"] = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls
                ]
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "tool_calls" if calls else "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse(
                None, dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])
            )

        events = [chunk({"role": "assistant", "content": ""})]
        for w in text.split(" "):
            events.append(chunk({"content": w + " "}))
        for i, c in enumerate(calls):
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": c["id"],
                                "type": "function",
                                "function": {"name": c["name"], "arguments": ""},
                            }
                        ]
                    }
                )
            )
            events.append(
                chunk({"tool_calls": [{"index": i, "function": {"arguments": c["arguments"]}}]})
            )
        events.append(chunk({}, "tool_calls" if calls else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(_sse(None, dict(base, choices=[], usage=usage)))
        events.append(_sse(None, "[DONE]"))
        return await self._stream(request, rec, events, fault)


@pytest.fixture
def scripted_upstream() -> Iterator[ScriptedUpstream]:
    up = ScriptedUpstream().start()
    yield up
    up.stop()
