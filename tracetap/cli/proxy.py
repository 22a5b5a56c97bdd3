"""`tracetap proxy`: run the recording proxy (reverse per provider, optional forward mode).

Its options are the fields of `tracetap.settings.Settings`; it prints what the agents need.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tracetap.cli.errors import UserError
from tracetap.cli.options import Db
from tracetap.settings import Settings

__all__ = ["register"]

err = Console(stderr=True, soft_wrap=True)  # messages and paths stay on one line


def _instructions(cfg: Settings, db_url: str, confdir: Path) -> str:
    from tracetap.storage.db import display_url

    host = "127.0.0.1" if cfg.listen_host in ("0.0.0.0", "::", "") else cfg.listen_host
    lines = [f"tracetap is recording into {display_url(db_url)}", ""]
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
        admin = "127.0.0.1" if cfg.admin_host in ("0.0.0.0", "::", "") else cfg.admin_host
        lines += [f"Admin: http://{admin}:{cfg.admin_port}/healthz and /metrics", ""]
    if cfg.ui_port:
        lines += [f"Web UI: http://127.0.0.1:{cfg.ui_port}/", ""]
    lines.append("Ctrl-C stops it; everything pending is written first.")
    return "\n".join(lines)


def _options() -> list[inspect.Parameter]:
    """One typer option per `Settings` field: its flag, environment variable, help and default."""
    hints = typing.get_type_hints(Settings)
    params = []
    for f, setting in Settings.described():
        hint = hints[f.name]
        if f.name == "resolve":
            hint = list[str] | None  # repeatable on the command line
        flag = setting.flag or "--" + f.name.replace("_", "-")
        decls = [flag] if hint is not bool else [f"{flag}/--no-{flag[2:]}"]
        option = typer.Option(*decls, envvar=setting.env, help=setting.help, min=setting.min)
        default = None if f.name == "resolve" else f.default
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Db if f.name == "db" else Annotated[hint, option],  # --db: shared
            )
        )
    return params


def proxy(**options: Any) -> None:
    """Run the recording proxy in front of the model APIs.

    Example: tracetap proxy --db sqlite:///traces.db
    """
    from sqlalchemy.exc import SQLAlchemyError

    from tracetap.privacy.files import private_files
    from tracetap.proxy.runner import run_proxy
    from tracetap.storage.db import SchemaError, default_url, display_url, hide_passwords
    from tracetap.storage.journal import JournalLockedError

    options["resolve"] = tuple(options.get("resolve") or ())
    try:
        cfg = Settings(**options)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not (cfg.anthropic_port or cfg.openai_port or cfg.forward_port):
        raise typer.BadParameter("every mode is disabled: give a port")
    private_files()  # before anything is created: the store, journal and CA are the user's alone
    db_url = cfg.db or default_url()
    conf = Path(cfg.confdir or os.path.expanduser("~/.mitmproxy"))
    ready = asyncio.Event()

    ui_socket = _ui_socket(cfg.ui_port) if cfg.ui_port else None
    ui_process: Any = None

    async def main() -> None:
        nonlocal ui_process
        task = asyncio.ensure_future(run_proxy(cfg, ready=ready))
        waiter = asyncio.ensure_future(ready.wait())
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            if ui_socket is not None:  # the store's schema exists once the proxy is ready
                ui_process = _start_ui(db_url, ui_socket)
            err.print(_instructions(cfg, db_url, conf), highlight=False, markup=False)
        else:
            waiter.cancel()
        await task

    try:
        asyncio.run(main())
    except (SchemaError, JournalLockedError) as exc:
        err.print(f"[red]error:[/red] {hide_passwords(str(exc), db_url)}")
        raise typer.Exit(2) from None
    except (OSError, ValueError, RuntimeError) as exc:
        err.print(f"[red]error:[/red] cannot start the proxy: {hide_passwords(str(exc), db_url)}")
        raise typer.Exit(2) from None
    except SQLAlchemyError as exc:  # the store cannot be reached
        reason = hide_passwords(str(exc).splitlines()[0], db_url)
        err.print(f"[red]error:[/red] cannot open {display_url(db_url)}: {reason}")
        raise typer.Exit(2) from None
    finally:
        if ui_process is not None:
            ui_process.terminate()
            ui_process.join(10)
        if ui_socket is not None:
            ui_socket.close()


def _ui_socket(port: int) -> Any:
    """The web UI's listening socket on loopback, bound before the proxy starts so a port in
    use is one line (exit 2)."""
    from tracetap.ui.app import bind

    try:
        return bind("127.0.0.1", port)
    except OSError as exc:
        raise UserError(f"--ui-port {port}: cannot listen: {exc.strerror or exc}") from None


def _start_ui(db_url: str, sock: Any) -> Any:
    """`tracetap ui` on the store, in a process of its own (the proxy's event loop and GIL
    stay the streams' alone); it serves on `sock` and ends with the proxy."""
    import multiprocessing

    from tracetap.ui.app import serve_url

    process = multiprocessing.get_context("spawn").Process(
        target=serve_url, args=(db_url, sock), name="tracetap-ui", daemon=True
    )
    process.start()
    return process


_params = _options()
proxy.__signature__ = inspect.Signature(_params)  # type: ignore[attr-defined]
proxy.__annotations__ = {p.name: p.annotation for p in _params}


def register(app: typer.Typer) -> None:
    app.command("proxy")(proxy)
