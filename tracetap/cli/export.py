"""`tracetap export FORMAT`: write the store (or a TraceLab file) out in another format.

Each format is a thin wrapper over `tracetap.exporters.<format>.export`; rows stream.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tracetap.cli.options import (
    Db,
    Input,
    Kind,
    OutputFile,
    Provider,
    SessionFilter,
    Since,
    Until,
    db_url,
)

__all__ = ["export_app", "register"]

err = Console(stderr=True, soft_wrap=True)  # messages and paths stay on one line
export_app = typer.Typer(
    help="Export recorded rounds (TraceLab JSONL and other formats).", no_args_is_help=True
)


def _when(value: str | None) -> float | None:
    from tracetap.tracelab import parse_ts

    if value is None:
        return None
    try:
        return parse_ts(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 time") from None


def _rows(
    db: str | None,
    input_path: Path | None,
    since: str | None,
    until: str | None,
    provider: str | None,
    session: str | None,
    kind: str,
    label: str,
) -> Iterator[dict[str, Any]]:
    """exporters.tracelab.source_rows, with the options checked first (bad ones exit 2) and a
    progress line on a terminal."""
    from tracetap.exporters.tracelab import KINDS, source_rows

    if kind not in KINDS:
        raise typer.BadParameter(f"--kind must be one of {', '.join(KINDS)}")
    t0, t1 = _when(since), _when(until)
    if input_path is not None and not input_path.exists():
        raise typer.BadParameter(f"{input_path} does not exist")
    rows = source_rows(
        db_url(db), input_path, since=t0, until=t1, provider=provider, session=session, kind=kind
    )
    return _progress(rows, label)


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    if path is None or str(path) == "-":
        yield sys.stdout
        return
    from tracetap.tracelab import open_text

    path.parent.mkdir(parents=True, exist_ok=True)
    with open_text(path, "w") as fh:
        yield fh


def _progress(rows: Iterator[dict[str, Any]], label: str) -> Iterator[dict[str, Any]]:
    if not err.is_terminal:
        yield from rows
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        for row in rows:
            yield row
            bar.advance(task)


@export_app.command("tracelab")
def export_tracelab(
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Output .jsonl or jsonl.gz file (default: stdout)."),
    ] = None,
    db: Db = None,
    input_path: Input = None,
    since: Since = None,
    until: Until = None,
    provider: Provider = None,
    session: SessionFilter = None,
    kind: Kind = "agent",
    extended: Annotated[
        bool,
        typer.Option(help="Add tracetap's tt_* fields (proxy timing, round kind, cache writes)."),
    ] = False,
    public: Annotated[
        bool,
        typer.Option(
            help="Sanitized rows: no text or tool inputs, no "
            "path-like keys, ids as keyed pseudonyms."
        ),
    ] = False,
    key_file: Annotated[
        Path | None,
        typer.Option(
            envvar="TRACETAP_KEY_FILE",
            help="Pseudonym key file (default: the installation key, created 0600).",
        ),
    ] = None,
) -> None:
    """Write TraceLab-format JSONL rows, one per round (../shared/tracelab-format.md).

    Example: tracetap export tracelab --db sqlite:///traces.db -o rounds.jsonl
    """
    from tracetap.exporters import tracelab
    from tracetap.exporters.public import Pseudonymizer

    rows = _rows(db, input_path, since, until, provider, session, kind, "tracelab")
    ps = None
    if public:
        from tracetap.privacy.keys import load_key

        try:
            ps = Pseudonymizer(load_key(key_file))
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"pseudonym key: {exc}") from None
    try:
        with _output(output) as fh:
            n = tracelab.export(rows, fh, extended=extended, pseudonymizer=ps)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    err.print(f"wrote {n:,} rows" + (f" to {output}" if output else ""))


def _done(n: int, what: str, target: Path | str | None) -> None:
    err.print(f"wrote {n:,} {what}" + (f" to {target}" if target else ""))


@export_app.command("tracelab-duckdb")
def export_duckdb(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="DuckDB file to write (replaced if it exists).")
    ],
    db: Db = None,
    input_path: Input = None,
    since: Since = None,
    until: Until = None,
    provider: Provider = None,
    session: SessionFilter = None,
    kind: Kind = "agent",
) -> None:
    """Write the DuckDB file TraceLab's scripts query (rounds, tool_calls, timing_events,
    trace_source).

    Example: tracetap export tracelab-duckdb --input rounds.jsonl -o tracelab.duckdb
    """
    from tracetap.exporters import duckdb_file

    source = str(input_path) if input_path else (db or "tracetap-store")
    n = duckdb_file.export(
        _rows(db, input_path, since, until, provider, session, kind, "duckdb"),
        output,
        source_path=source,
    )
    _done(n, "rounds", output)


@export_app.command("replay-csv")
def export_replay_csv(
    output: OutputFile = None,
    db: Db = None,
    input_path: Input = None,
    since: Since = None,
    until: Until = None,
    provider: Provider = None,
    session: SessionFilter = None,
    kind: Kind = "main",
    waits: Annotated[
        str,
        typer.Option(
            help="recorded: end of response to next request "
            "(tools and human waits); tool-only: sum of the "
            "round's tool latencies (TraceLab's)."
        ),
    ] = "recorded",
) -> None:
    """Write TraceLab's session-runner CSV with recorded arrivals and waits.

    Example: tracetap export replay-csv --input rounds.jsonl --waits tool-only -o replay.csv
    """
    from tracetap.exporters import replay_csv

    if waits not in replay_csv.WAITS:
        raise typer.BadParameter(f"--waits must be one of {', '.join(replay_csv.WAITS)}")
    with _output(output) as fh:
        n = replay_csv.export(
            _rows(db, input_path, since, until, provider, session, kind, "replay-csv"),
            fh,
            waits=waits,
        )
    _done(n, f"rounds (waits: {waits})", output)


@export_app.command("mooncake")
def export_mooncake(
    output: OutputFile = None,
    db: Db = None,
    input_path: Input = None,
    since: Since = None,
    until: Until = None,
    provider: Provider = None,
    session: SessionFilter = None,
    kind: Kind = "agent",
    block_size: Annotated[
        int,
        typer.Option(help="Tokens per hash block (a multiple of the recorded 64-token blocks)."),
    ] = 512,
) -> None:
    """Write a mooncake trace (timestamp, input_length, output_length, hash_ids) for AIPerf,
    SGLang bench_serving and Dynamo.

    Example: tracetap export mooncake --db sqlite:///traces.db --block-size 512 -o trace.jsonl
    """
    from tracetap.exporters import mooncake

    if block_size <= 0:
        raise typer.BadParameter("--block-size must be positive")
    try:
        with _output(output) as fh:
            n = mooncake.export(
                _rows(db, input_path, since, until, provider, session, kind, "mooncake"),
                fh,
                block_size=block_size,
            )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    _done(n, "requests", output)


@export_app.command("atif")
def export_atif(
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="A directory (one "
            "<session>.json each) or a .jsonl file "
            "(default: JSON lines on stdout).",
        ),
    ] = None,
    db: Db = None,
    input_path: Input = None,
    since: Since = None,
    until: Until = None,
    provider: Provider = None,
    session: SessionFilter = None,
    kind: Kind = "main",
) -> None:
    """Write one Harbor ATIF trajectory per session.

    Example: tracetap export atif --input rounds.jsonl -o trajectories/
    """
    from tracetap.exporters import atif

    rows = _rows(db, input_path, since, until, provider, session, kind, "atif")
    if output is not None and not output.name.endswith((".jsonl", ".jsonl.gz")):
        n = atif.export(rows, output)
    else:
        with _output(output) as fh:
            n = atif.export(rows, fh)
    _done(n, "trajectories", output)


@export_app.command("otel")
def export_otel(
    output: OutputFile = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="OTLP/HTTP collector base URL; spans are POSTed to URL/v1/traces as JSON."
        ),
    ] = None,
    db: Db = None,
    input_path: Input = None,
    since: Since = None,
    until: Until = None,
    provider: Provider = None,
    session: SessionFilter = None,
    kind: Kind = "agent",
) -> None:
    """Write OpenTelemetry GenAI spans (a span per round, a child per tool call) as OTLP
    JSON, or send them to an OTLP endpoint.

    Example: tracetap export otel --input rounds.jsonl --endpoint http://127.0.0.1:4318
    """
    from tracetap.exporters import otel

    rows = _rows(db, input_path, since, until, provider, session, kind, "otel")
    if endpoint:
        import httpx

        try:
            n = otel.post_batches(rows, endpoint)
        except httpx.HTTPError as exc:
            err.print(f"[red]error:[/red] sending to {endpoint}: {exc}")
            raise typer.Exit(1) from None
        _done(n, "rounds", endpoint)
        return
    with _output(output) as fh:
        n = otel.export(rows, fh)
    _done(n, "rounds", output)


@export_app.command("parquet")
def export_parquet(
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="Directory for rounds/, tool_calls/, timing_events/."),
    ],
    db: Db = None,
    input_path: Input = None,
    since: Since = None,
    until: Until = None,
    provider: Provider = None,
    session: SessionFilter = None,
    kind: Kind = "agent",
) -> None:
    """Write the three TraceLab tables as Parquet, partitioned by day (day=YYYY-MM-DD).

    Example: tracetap export parquet --input rounds.jsonl -o tables/
    """
    from tracetap.exporters import parquet

    n = parquet.export(
        _rows(db, input_path, since, until, provider, session, kind, "parquet"), output
    )
    _done(n, "rounds", output)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
