"""Runs mitmproxy in-process with tracetap's addon: reverse modes per provider, optional forward.

Also serves the admin endpoints (/healthz, /metrics) and flushes the pipeline on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import options
from mitmproxy.tools.dump import DumpMaster

from tracetap.allocator import keep_freed_memory
from tracetap.ingest.pipeline import Pipeline, Transform
from tracetap.ingest.steps import build_transforms
from tracetap.proxy.capture import Capture
from tracetap.proxy.resolve import Resolve
from tracetap.storage.db import default_url, ensure_schema, make_engine
from tracetap.storage.writer import WriterExtension

__all__ = [
    "API_HOSTS",
    "ProxyConfig",
    "build_pipeline",
    "default_journal_dir",
    "run_proxy",
]

log = logging.getLogger("tracetap.proxy")

# Hosts whose TLS is intercepted in forward mode; every other host is tunnelled untouched.
API_HOSTS = ("api.anthropic.com", "api.openai.com", "chatgpt.com")


@dataclass
class ProxyConfig:
    db_url: str | None = None
    listen_host: str = "127.0.0.1"
    anthropic_port: int | None = 8080
    anthropic_upstream: str = "https://api.anthropic.com"
    openai_port: int | None = 8081
    openai_upstream: str = "https://api.openai.com"
    forward_port: int | None = None
    admin_port: int | None = None
    confdir: str | None = None
    journal_dir: str | None = None
    resolve: list[str] = field(default_factory=list)  # host:port=address:port overrides
    upstream_insecure: bool = False  # do not verify upstream TLS certificates
    transforms: list[Transform] | None = None  # None: the content policy and tokenizer below
    extensions: list[WriterExtension] | None = None
    content: str = "redacted"  # full | redacted | none
    key_file: str | None = None
    tokenizer: str = "default"  # "default", "hf:<tokenizer.json>", or "off"
    ingest_workers: int = 1  # normalization processes in the ingest process (by session)
    quiet: bool = False


def default_journal_dir(db_url: str) -> Path:
    """Beside a SQLite file; for servers, under the user data dir, one per database."""
    env = os.environ.get("TRACETAP_JOURNAL_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    from tracetap.content import digest

    return Path(user_data_dir("tracetap")) / "journal" / digest(db_url.encode())[:12]


def build_pipeline(
    db_url: str | None,
    journal_dir: str | None,
    transforms: list[Transform] | None = None,
    extensions: list[WriterExtension] | None = None,
) -> Pipeline:
    """The pipeline for a database; without explicit steps, the default policy's steps."""
    url = db_url or default_url()
    engine = make_engine(url)
    ensure_schema(engine)
    if transforms is None:
        transforms, default_ext = build_transforms()
        extensions = default_ext if extensions is None else extensions
    return Pipeline(
        engine,
        journal_dir or default_journal_dir(url),
        transforms=transforms,
        extensions=extensions or [],
    )


def _pipeline(cfg: ProxyConfig) -> Any:
    """The ingest pipeline for a proxy: in its own process (the default), or in this one
    when the caller supplies its own steps."""
    url = cfg.db_url or default_url()
    if cfg.transforms is None and cfg.extensions is None:
        ensure_schema(make_engine(url))  # clear errors here, before the child starts
        from tracetap.ingest.process import PipelineProcess, WorkerConfig

        return PipelineProcess(
            WorkerConfig(
                db_url=url,
                journal_dir=str(cfg.journal_dir or default_journal_dir(url)),
                content=cfg.content,
                key_file=cfg.key_file,
                tokenizer=cfg.tokenizer,
                workers=cfg.ingest_workers,
            )
        )
    return build_pipeline(cfg.db_url, cfg.journal_dir, cfg.transforms or [], cfg.extensions or [])


def _host_pattern(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return rf"^{re.escape(parts.hostname or '')}:{port}$"


def modes(cfg: ProxyConfig) -> list[str]:
    out = []
    if cfg.anthropic_port:
        out.append(f"reverse:{cfg.anthropic_upstream}@{cfg.anthropic_port}")
    if cfg.openai_port:
        out.append(f"reverse:{cfg.openai_upstream}@{cfg.openai_port}")
    if cfg.forward_port:
        out.append(f"regular@{cfg.forward_port}")
    return out


def allow_hosts(cfg: ProxyConfig) -> list[str]:
    pats = [rf"^{re.escape(h)}:\d+$" for h in API_HOSTS]
    for url in (cfg.anthropic_upstream, cfg.openai_upstream):
        pats.append(_host_pattern(url))
    return pats


async def run_proxy(cfg: ProxyConfig, *, ready: asyncio.Event | None = None) -> Any:
    """Run until SIGINT/SIGTERM (or cancellation); returns the stopped pipeline."""
    keep_freed_memory()  # every request body would otherwise be page-faulted in afresh
    pipeline = _pipeline(cfg)
    # Threads of this process (the stats reader; in-process pipelines) share the GIL with
    # the event loop: hand it back within 1 ms (not 5 ms) so no stream chunk waits on them.
    sys.setswitchinterval(0.001)
    pipeline.start()
    opts = options.Options()
    master = DumpMaster(opts, with_termlog=not cfg.quiet, with_dumper=False)
    capture = Capture(pipeline)
    master.addons.add(capture, Resolve())
    update = {
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
    admin = None
    if cfg.admin_port:
        from tracetap.proxy.admin import start_admin

        admin = await start_admin(cfg.listen_host, cfg.admin_port, pipeline)
    try:
        run = asyncio.ensure_future(master.run())
        if ready is not None:
            await _wait_listening(cfg)
            ready.set()
        await run
    finally:
        if admin is not None:
            await admin.cleanup()
        await asyncio.to_thread(pipeline.stop)
    return pipeline


async def _wait_listening(cfg: ProxyConfig) -> None:
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
