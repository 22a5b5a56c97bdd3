"""`tracetap proxy`: run the recording proxy (reverse per provider, optional forward mode).

Prints exactly what Claude Code and Codex need to route through it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["register"]

err = Console(stderr=True, soft_wrap=True)  # messages and paths stay on one line


def _instructions(cfg, db_url: str, confdir: Path) -> str:  # type: ignore[no-untyped-def]
    host = "127.0.0.1" if cfg.listen_host in ("0.0.0.0", "::", "") else cfg.listen_host
    lines = [f"tracetap is recording into {db_url}", ""]
    if cfg.anthropic_port:
        lines += [
            "Claude Code:",
            f"  export ANTHROPIC_BASE_URL=http://{host}:{cfg.anthropic_port}",
            "",
        ]
    if cfg.openai_port:
        lines += [
            "Codex (~/.codex/config.toml):",
            '  model_provider = "tracetap"',
            "  [model_providers.tracetap]",
            '  name = "OpenAI via tracetap"',
            f'  base_url = "http://{host}:{cfg.openai_port}/v1"',
            '  wire_api = "responses"',
            '  env_key = "OPENAI_API_KEY"',
            f"Other OpenAI-compatible clients: OPENAI_BASE_URL=http://{host}:{cfg.openai_port}/v1",
            "",
        ]
    if cfg.forward_port:
        ca = confdir / "mitmproxy-ca-cert.pem"
        lines += [
            "Forward mode (intercepts only api.anthropic.com, api.openai.com, chatgpt.com):",
            f"  export HTTPS_PROXY=http://{host}:{cfg.forward_port}",
            f"  export NODE_EXTRA_CA_CERTS={ca}      # Claude Code",
            f"  export CODEX_CA_CERTIFICATE={ca}     # Codex",
            f"  export SSL_CERT_FILE={ca}            # other clients",
            "",
        ]
    if cfg.admin_port:
        lines += [f"Admin: http://{host}:{cfg.admin_port}/healthz and /metrics", ""]
    lines.append("Ctrl-C stops it; everything pending is written first.")
    return "\n".join(lines)


def proxy(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="TRACETAP_DB",
            help="SQLAlchemy database URL (default: SQLite file in the user data dir).",
        ),
    ] = None,
    listen_host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    anthropic_port: Annotated[
        int, typer.Option(help="Reverse-proxy port for Anthropic (0 disables).")
    ] = 8080,
    anthropic_upstream: Annotated[
        str, typer.Option(help="Where Anthropic traffic goes.")
    ] = "https://api.anthropic.com",
    openai_port: Annotated[
        int, typer.Option(help="Reverse-proxy port for OpenAI (0 disables).")
    ] = 8081,
    openai_upstream: Annotated[
        str, typer.Option(help="Where OpenAI traffic goes.")
    ] = "https://api.openai.com",
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            help="Forward (HTTPS_PROXY) mode port; TLS is intercepted for model API hosts only.",
        ),
    ] = None,
    admin_port: Annotated[
        int | None,
        typer.Option(envvar="TRACETAP_ADMIN_PORT", help="Serve /healthz and /metrics here."),
    ] = None,
    confdir: Annotated[
        str | None,
        typer.Option(
            envvar="TRACETAP_CONFDIR", help="mitmproxy CA directory (default ~/.mitmproxy)."
        ),
    ] = None,
    journal_dir: Annotated[
        str | None,
        typer.Option(envvar="TRACETAP_JOURNAL_DIR", help="Write-ahead journal directory."),
    ] = None,
    resolve: Annotated[
        list[str] | None,
        typer.Option(
            "--resolve",
            help="Send upstream connections for host:port to address:port instead "
            "(repeatable), e.g. api.anthropic.com:443=10.0.0.5:8443.",
        ),
    ] = None,
    upstream_insecure: Annotated[
        bool, typer.Option(help="Do not verify upstream TLS certificates (staging upstreams only).")
    ] = False,
    content: Annotated[
        str,
        typer.Option(
            envvar="TRACETAP_CONTENT",
            help="What text is kept: full, redacted (secrets and PII replaced by placeholders and "
            "pseudonyms) or none (sizes, token counts, hashes and timing only).",
        ),
    ] = "redacted",
    key_file: Annotated[
        str | None,
        typer.Option(
            envvar="TRACETAP_KEY_FILE",
            help="Pseudonym key (HMAC) file; created 0600 on first use. Share it across a team "
            "so pseudonyms agree.",
        ),
    ] = None,
    tokenizer: Annotated[
        str,
        typer.Option(
            help="Tokenizer for per-segment counts and prefix block hashes: default (offline "
            "cl100k), hf:<tokenizer.json>, or off."
        ),
    ] = "default",
    ingest_workers: Annotated[
        int,
        typer.Option(
            envvar="TRACETAP_INGEST_WORKERS",
            min=1,
            help="Processes that parse, tokenize and scrub captured rounds, each taking whole "
            "sessions (by the agents' session headers; a new session goes to the least busy "
            "one). 1 (the default) suits a laptop; more for a team proxy with cores to "
            "spare.",
        ),
    ] = 1,
    quiet: Annotated[bool, typer.Option(help="Do not print mitmproxy warnings.")] = False,
) -> None:
    """Run the recording proxy in front of the model APIs.

    Example: tracetap proxy --db sqlite:///traces.db
    """
    from tracetap.proxy.runner import ProxyConfig, run_proxy
    from tracetap.storage.db import SchemaError, default_url
    from tracetap.storage.journal import JournalLockedError

    cfg = ProxyConfig(
        db_url=db,
        listen_host=listen_host,
        anthropic_port=anthropic_port or None,
        anthropic_upstream=anthropic_upstream,
        openai_port=openai_port or None,
        openai_upstream=openai_upstream,
        forward_port=port,
        admin_port=admin_port,
        confdir=confdir,
        journal_dir=journal_dir,
        quiet=quiet,
        resolve=list(resolve or []),
        upstream_insecure=upstream_insecure,
        content=content,
        key_file=key_file,
        tokenizer=tokenizer,
        ingest_workers=ingest_workers,
    )
    if not (cfg.anthropic_port or cfg.openai_port or cfg.forward_port):
        raise typer.BadParameter("every mode is disabled: give a port")
    db_url = db or default_url()
    conf = Path(confdir or os.path.expanduser("~/.mitmproxy"))
    ready = asyncio.Event()

    async def main() -> None:
        task = asyncio.ensure_future(run_proxy(cfg, ready=ready))
        waiter = asyncio.ensure_future(ready.wait())
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            err.print(_instructions(cfg, db_url, conf), highlight=False, markup=False)
        else:
            waiter.cancel()
        await task

    try:
        asyncio.run(main())
    except (SchemaError, JournalLockedError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except (OSError, ValueError, RuntimeError) as exc:
        err.print(f"[red]error:[/red] cannot start the proxy: {exc}")
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.command("proxy")(proxy)
