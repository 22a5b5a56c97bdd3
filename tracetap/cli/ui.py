"""`tracetap ui`: watch and explore recorded sessions in a browser, live while agents run.

A thin wrapper over tracetap.ui.app: checks the store and the address, binds, serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tracetap.cli.errors import UserError
from tracetap.cli.options import Db, db_url, open_store

__all__ = ["register", "ui"]

err = Console(stderr=True, soft_wrap=True)


def ui(
    db: Db = None,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; anything but loopback needs --token."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8090,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="TRACETAP_UI_TOKEN",
            help="Secret every request must carry (?token=, a header or the cookie it sets).",
        ),
    ] = None,
    content: Annotated[
        str,
        typer.Option(
            help="Round text shown: redacted (rounds stored in full are scrubbed) or full."
        ),
    ] = "redacted",
    dataset: Annotated[
        list[Path] | None,
        typer.Option(
            "--dataset",
            metavar="DIR",
            help="A folder made by `tracetap contribute` to show with its privacy review "
            "(repeatable).",
        ),
    ] = None,
) -> None:
    """Serve a local web UI on the store: sessions (live), waterfalls, diffs, analysis.

    Example: tracetap ui --db sqlite:///traces.db --port 8090
    """
    from tracetap.storage.db import display_url
    from tracetap.ui.app import bind, is_loopback, serve

    if content not in ("redacted", "full"):
        raise UserError(f"--content {content!r}: use redacted or full")
    if not is_loopback(host) and not token:
        raise UserError(
            f"--host {host} is reachable from other machines: give --token SECRET "
            "(every request must then carry it) or use 127.0.0.1"
        )
    from tracetap.ui.datasets import check_dataset

    datasets = list(dataset or [])
    for folder in datasets:
        try:
            check_dataset(folder)
        except ValueError as exc:
            raise UserError(f"--dataset {exc}") from None
    url = db_url(db)
    engine = open_store(url)
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    err.print(
        f"tracetap ui on http://{shown}:{bound}/ reading {display_url(url)} (read-only)"
        + ("; requests need the token" if token else ""),
        highlight=False,
        markup=False,
    )
    try:
        serve(engine, sock, token=token, content=content, datasets=datasets)
    except KeyboardInterrupt:  # Ctrl-C: the server has stopped
        pass


def register(app: typer.Typer) -> None:
    """Add the `ui` command."""
    app.command("ui")(ui)
