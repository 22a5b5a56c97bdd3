"""Runs mitmproxy in-process with tracetap's addon: reverse modes per provider, optional forward.

Also serves the admin endpoints (/healthz, /metrics) and flushes ingest on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import signal
import sys
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import options
from mitmproxy.tools.dump import DumpMaster

from tracetap.allocator import keep_freed_memory
from tracetap.ingest.sink import IngestSink, open_sink
from tracetap.proxy.capture import Capture
from tracetap.proxy.resolve import Resolve
from tracetap.settings import Settings

__all__ = ["API_HOSTS", "allow_hosts", "modes", "run_proxy"]

log = logging.getLogger("tracetap.proxy")

# Hosts whose TLS is intercepted in forward mode; every other host is tunnelled untouched.
API_HOSTS = ("api.anthropic.com", "api.openai.com", "chatgpt.com")


def _host_pattern(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return rf"^{re.escape(parts.hostname or '')}:{port}$"


def modes(cfg: Settings) -> list[str]:
    out = []
    if cfg.anthropic_port:
        out.append(f"reverse:{cfg.anthropic_upstream}@{cfg.anthropic_port}")
    if cfg.openai_port:
        out.append(f"reverse:{cfg.openai_upstream}@{cfg.openai_port}")
    if cfg.forward_port:
        out.append(f"regular@{cfg.forward_port}")
    return out


def allow_hosts(cfg: Settings) -> list[str]:
    pats = [rf"^{re.escape(h)}:\d+$" for h in API_HOSTS]
    for url in (cfg.anthropic_upstream, cfg.openai_upstream):
        pats.append(_host_pattern(url))
    return pats


async def run_proxy(cfg: Settings, *, ready: asyncio.Event | None = None) -> IngestSink:
    """Run until SIGINT/SIGTERM (or cancellation); returns the stopped ingest sink."""
    keep_freed_memory()  # every request body would otherwise be page-faulted in afresh
    sink = open_sink(cfg)
    # Threads of this process (the stats reader) share the GIL with the event loop: hand it
    # back within 1 ms rather than the default 5 ms, so no stream chunk waits on them.
    sys.setswitchinterval(0.001)
    sink.start()
    opts = options.Options()
    master = DumpMaster(opts, with_termlog=not cfg.quiet, with_dumper=False)
    master.addons.add(Capture(sink), Resolve())
    update: dict[str, Any] = {
        **cfg.addon_options(),
        "mode": modes(cfg),
        "listen_host": cfg.listen_host,
        "allow_hosts": allow_hosts(cfg) if cfg.forward_port else [],
        "connection_strategy": "lazy",
        "stream_large_bodies": None,
        "termlog_verbosity": "warn",
        "flow_detail": 0,
    }
    if cfg.confdir:
        update["confdir"] = cfg.confdir
    if cfg.resolve:
        update["tracetap_resolve"] = list(cfg.resolve)
    if cfg.upstream_insecure:
        update["ssl_insecure"] = True
    opts.update(**{k: v for k, v in update.items() if k in opts})
    # What exists now (modules, mitmproxy's and our addons) lives as long as the proxy: keep it
    # out of the collector's full passes, which otherwise rescan it between stream chunks.
    gc.freeze()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, master.shutdown)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        run = asyncio.ensure_future(master.run())
        if ready is not None:
            await _wait_listening(cfg)
            ready.set()
        await run
    finally:
        await asyncio.to_thread(sink.stop)
    return sink


async def _wait_listening(cfg: Settings) -> None:
    """Wait until every configured port accepts connections."""
    host = "127.0.0.1" if cfg.listen_host in ("0.0.0.0", "") else cfg.listen_host
    for port in (cfg.anthropic_port, cfg.openai_port, cfg.forward_port):
        if not port:
            continue
        for _ in range(400):
            try:
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.025)
