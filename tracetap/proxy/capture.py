"""The mitmproxy addon: taps model-API exchanges (HTTP, SSE, WebSocket) without buffering them.

Hooks only timestamp and keep chunks, and hand finished exchanges to the ingest pipeline.
Standalone: `mitmdump -s tracetap/proxy/capture.py --set tracetap_db=sqlite:///t.db` (every
`tracetap proxy` recording option is a `tracetap_<name>` option; tracetap.settings).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import typing
import uuid
from typing import Any

from mitmproxy import ctx, exceptions, http

from tracetap.allocator import keep_freed_memory
from tracetap.ingest.normalize import drop_credentials
from tracetap.ingest.sink import Captured, IngestSink, open_sink
from tracetap.model import Exchange, StreamEvent
from tracetap.privacy.files import private_files
from tracetap.settings import Settings
from tracetap.wire.adapters import select
from tracetap.wire.adapters.openai_responses import OpenAIResponses

__all__ = ["Capture", "addons"]

log = logging.getLogger("tracetap.proxy")

KEPT_WITHIN = 5.0  # seconds a response's end waits for its exchange to reach the spool
_WS_TERMINAL = {"response.completed", "response.incomplete", "response.failed", "error"}
_RESPONSES = OpenAIResponses()


class _BodyCopy:
    """The request stream callable: keeps the body's first `max_body` bytes and forwards every
    chunk. What it keeps is a true prefix: past the cap it keeps nothing, not even a chunk
    small enough to fit, so the copy never joins bytes from either side of a gap."""

    __slots__ = ("chunks", "kept", "max_body", "truncated")

    def __init__(self, max_body: int) -> None:
        self.chunks: list[bytes] = []
        self.kept = 0
        self.max_body = max_body
        self.truncated = False

    def __call__(self, chunk: bytes) -> bytes:
        if chunk and not self.truncated:
            room = self.max_body - self.kept
            if len(chunk) > room:  # the cap: keep the head that fits, then nothing more
                self.truncated = True
                if room:
                    self.chunks.append(chunk[:room])
                    self.kept += room
            else:
                self.chunks.append(chunk)
                self.kept += len(chunk)
        return chunk


class _StreamTap:
    """The response stream callable: keep each chunk with its arrival time, pass it unchanged.

    Nothing is decoded or parsed here (tracetap.wire.frames does it in the ingest process);
    past the cap only the byte count goes on, so memory stays flat on any response size. The
    chunks kept are a true prefix of the stream (the cap falls inside the last one kept, and
    nothing after it is kept), so framing never joins bytes from either side of a gap; framing
    knows the stream went on from `wire` exceeding the bytes kept.
    """

    __slots__ = ("adapter", "transport", "chunks", "kept", "wire", "max_body", "truncated")

    def __init__(self, adapter: str, transport: str, max_body: int) -> None:
        self.adapter = adapter
        self.transport = transport
        self.chunks: list[tuple[float, bytes]] = []
        self.kept = 0
        self.wire = 0
        self.max_body = max_body
        self.truncated = False

    def __call__(self, chunk: bytes) -> bytes:
        n = len(chunk)
        self.wire += n
        if n and not self.truncated:
            room = self.max_body - self.kept
            if n > room:  # the cap: keep the head that fits, then nothing more
                self.truncated = True
                if room:
                    self.chunks.append((time.time(), chunk[:room]))
                    self.kept += room
            else:
                self.chunks.append((time.time(), chunk))
                self.kept += n
        return chunk


def _length(response: http.Response) -> int:
    """The Content-Length a response announced, or a size larger than any cap."""
    try:
        return int(response.headers.get("content-length", ""))
    except ValueError:
        return 1 << 62


class _ByteCount:
    """The stream callable of traffic only passed through: counts its bytes, keeps none."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, chunk: bytes) -> bytes:
        self.n += len(chunk)
        return chunk


def _exchange(
    flow: http.HTTPFlow, api: str, transport: str, body: _BodyCopy | None = None
) -> Exchange:
    """The request side of an exchange; the body stays encoded (decoded off the hot path)."""
    req = flow.request
    if body is not None:
        raw, truncated = b"".join(body.chunks), body.truncated
    else:
        raw, truncated = req.raw_content or b"", False
    return Exchange(
        uid=str(uuid.uuid4()),
        api=api,
        transport=transport,
        method=req.method,
        scheme=req.scheme,
        host=req.pretty_host,
        path=req.path,
        # credentials are forwarded but never leave this process: not spooled, not stored
        request_headers=drop_credentials(req.headers.items(multi=True)),
        request_body=raw,
        request_at=req.timestamp_start,
        request_encoding=req.headers.get("content-encoding"),
        truncated=truncated,
        # tracetap.wire.faults.REQUEST_OVER_CAP: the body kept is only its first max_body bytes
        error="truncated: request over max_body" if truncated else None,
    )


def _with_response(flow: http.HTTPFlow, tap: _StreamTap, body: _BodyCopy | None) -> Exchange:
    """The whole exchange once its response has ended (or failed): built off the first-byte
    path, from the flow and what the taps kept."""
    ex = _exchange(flow, tap.adapter, tap.transport, body)
    resp = flow.response
    if resp is not None:
        ex.status = resp.status_code
        ex.response_headers = drop_credentials(resp.headers.items(multi=True))
        ex.upstream_first_byte_at = resp.timestamp_start
    ex.wire_chunks = tap.chunks
    ex.response_bytes = tap.wire
    ex.truncated = ex.truncated or tap.truncated
    return ex


class Capture:
    """Records model-API traffic flowing through mitmproxy into an ingest sink.

    Given no sink (loaded with `mitmdump -s`), it opens the one its `tracetap_*` options
    describe when mitmproxy starts running and stops it when mitmproxy is done. Either way it
    serves the admin endpoints when `tracetap_admin_port` is set.
    """

    def __init__(self, sink: IngestSink | None = None) -> None:
        self.sink = sink
        self.settings = Settings()
        self._own_sink = False
        self._admin: Any = None
        self._taps: dict[str, _StreamTap] = {}
        self._bodies: dict[str, _BodyCopy] = {}
        self._ws: dict[str, Exchange | None] = {}

    # -- options --------------------------------------------------------------------------
    def load(self, loader: Any) -> None:
        hints = typing.get_type_hints(Settings)
        for f, setting in Settings.described():
            if setting.addon:
                loader.add_option(
                    Settings.addon_option(f.name), hints[f.name], f.default, setting.help
                )

    def configure(self, updated: set[str]) -> None:
        if any(name.startswith("tracetap_") for name in updated):
            try:
                self.settings = Settings.from_addon_options(ctx.options)
            except ValueError as exc:
                raise exceptions.OptionsError(str(exc)) from None

    async def running(self) -> None:
        if self.sink is None:  # loaded standalone with mitmdump -s
            private_files()  # the spool, journal and store hold the user's work: theirs alone
            keep_freed_memory()
            self.sink = open_sink(self.settings)
            self.sink.start()
            self._own_sink = True
        if self.settings.admin_port:
            from tracetap.proxy.admin import start_admin

            host = self.settings.admin_host
            self._admin = await start_admin(host, self.settings.admin_port, self.sink)

    async def done(self) -> None:
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        if self._own_sink and self.sink is not None:
            await asyncio.to_thread(self.sink.stop)
            self.sink = None

    def _submit(self, item: Captured) -> None:
        if self.sink is not None:
            self.sink.submit(item)

    async def _submit_kept(self, item: Captured) -> None:
        """Submit, and return once the sink has the exchange on disk (at most
        `KEPT_WITHIN` seconds): called from a response hook, it holds the end of the response,
        so a client never sees a round complete that a crash of this process could lose."""
        if self.sink is None:
            return
        loop = asyncio.get_running_loop()
        kept = loop.create_future()

        def settle() -> None:
            if not kept.done():
                kept.set_result(None)

        def done() -> None:
            loop.call_soon_threadsafe(settle)

        self.sink.submit(item, done)
        try:
            await asyncio.wait_for(kept, KEPT_WITHIN)
        except TimeoutError:  # a stuck disk: the exchange waits in memory, the client does not
            pass

    # -- HTTP -----------------------------------------------------------------------------
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Stream the request upstream as it arrives, keeping a copy for parsing."""
        if flow.request.method != "POST" or select("POST", flow.request.path) is None:
            return
        copy = _BodyCopy(self.settings.max_body)
        self._bodies[flow.id] = copy
        flow.request.stream = copy

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        if flow.websocket is not None or flow.response.status_code == 101:
            return
        adapter = select(flow.request.method, flow.request.path)
        if adapter is None:
            flow.response.stream = _ByteCount()  # pass through unbuffered, counted
            return
        sse = "text/event-stream" in flow.response.headers.get("content-type", "")
        tap = _StreamTap(adapter.name, "sse" if sse else "http", self.settings.max_body)
        self._taps[flow.id] = tap
        if not sse and _length(flow.response) <= self.settings.max_body:
            # A whole (non-streamed) body ends for its client when its last byte arrives, before
            # the response hook: kept here, it goes out after the hook has it on disk.
            flow.response.stream = False
        else:
            flow.response.stream = tap

    async def response(self, flow: http.HTTPFlow) -> None:
        tap = self._taps.pop(flow.id, None)
        body = self._bodies.pop(flow.id, None)
        if tap is None:
            if flow.websocket is None and flow.response is not None:
                self._submit_unrecognized(flow)
            return
        if flow.response is not None and flow.response.stream is False:
            tap(flow.response.raw_content or b"")
        ex = _with_response(flow, tap, body)
        ex.end_at = flow.response.timestamp_end if flow.response else time.time()
        await self._submit_kept(ex)

    def error(self, flow: http.HTTPFlow) -> None:
        msg = flow.error.msg if flow.error else "error"
        tap = self._taps.pop(flow.id, None)
        body = self._bodies.pop(flow.id, None)
        if tap is not None:
            ex = _with_response(flow, tap, body)
        else:
            adapter = select(flow.request.method, flow.request.path)
            if adapter is None or flow.websocket is not None:
                return
            ex = _exchange(flow, adapter.name, "http", body)
            if flow.response is not None:
                ex.status = flow.response.status_code
        ex.end_at = time.time()
        ex.error = ex.error or msg  # a request cut at the cap stays the reason (wire.faults)
        ex.client_disconnected = "client" in msg.lower()
        self._submit(ex)

    def _submit_unrecognized(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        count = flow.response.stream  # set in responseheaders
        if isinstance(count, _ByteCount):
            response_bytes = count.n
        else:  # a response mitmproxy read whole
            response_bytes = len(flow.response.raw_content or b"")
        self._submit(
            {
                "uid": str(uuid.uuid4()),
                "kind": "unrecognized",
                "method": flow.request.method,
                "host": flow.request.pretty_host,
                "path": flow.request.path.split("?", 1)[0][:2000],  # a query may hold a key
                "status": flow.response.status_code,
                "request_at": flow.request.timestamp_start,
                "end_at": flow.response.timestamp_end,
                "request_bytes": len(flow.request.raw_content or b""),
                "response_bytes": response_bytes,
            }
        )

    # -- WebSocket (OpenAI Responses over WS) -----------------------------------------------
    def websocket_start(self, flow: http.HTTPFlow) -> None:
        if _RESPONSES.matches("GET", flow.request.path):
            self._ws[flow.id] = None

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        if flow.id not in self._ws or flow.websocket is None:
            return
        msg = flow.websocket.messages[-1]
        current = self._ws[flow.id]
        text = msg.content.decode("utf-8", "replace") if msg.content else ""
        if msg.from_client:
            if '"response.create"' in text[:200]:
                if current is not None:  # a new request before the old one finished
                    current.error = "superseded by a new response.create"
                    current.end_at = msg.timestamp
                    self._submit(current)
                ex = _exchange(flow, _RESPONSES.name, "websocket")
                ex.request_body = msg.content
                ex.request_encoding = None
                ex.request_at = msg.timestamp
                ex.status = 101
                self._ws[flow.id] = ex
        elif current is not None:
            if current.upstream_first_byte_at is None:
                current.upstream_first_byte_at = msg.timestamp
            current.response_bytes += len(msg.content)
            name = _ws_event_type(text)
            current.events.append(StreamEvent(msg.timestamp, name, text))
            if name in _WS_TERMINAL:
                current.end_at = msg.timestamp
                self._submit(current)
                self._ws[flow.id] = None
        # Messages are forwarded already or about to be; keep only the newest in memory.
        if len(flow.websocket.messages) > 1:
            del flow.websocket.messages[:-1]

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        current = self._ws.pop(flow.id, None)
        if current is not None:
            current.end_at = time.time()
            current.error = "websocket closed before the response completed"
            current.client_disconnected = bool(flow.websocket and flow.websocket.closed_by_client)
            self._submit(current)


def _ws_event_type(text: str) -> str:
    head = text[:120]
    marker = '"type":'
    i = head.find(marker)
    if i < 0:
        try:
            data = json.loads(text)
        except ValueError:
            return "message"
        return str(data.get("type") or "message") if isinstance(data, dict) else "message"
    rest = head[i + len(marker) :].lstrip()
    if rest.startswith('"'):
        end = rest.find('"', 1)
        if end > 0:
            return rest[1:end]
    return "message"


addons = [Capture()]
