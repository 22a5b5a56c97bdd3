"""`tracetap export FORMAT`: write the store (or a TraceLab file) out in another format.

Each format is a thin wrapper over `tracetap.exporters.<format>.export`; rows stream.
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from tracetap.cli.errors import NOTHING, UserError
from tracetap.cli.options import (
    Agent,
    Db,
    Input,
    Kind,
    Model,
    OutputFile,
    Project,
    Session,
    Since,
    Until,
    db_url,
    make_filter,
    open_store,
)
from tracetap.cli.transfer import Meter, err, read_file, staged

if TYPE_CHECKING:
    from tracetap.storage.filters import Filter

__all__ = ["export_app", "register"]

export_app = typer.Typer(
    help="Export recorded rounds (TraceLab JSONL and other formats).", no_args_is_help=True
)


@dataclass
class _Rows:
    """The rows an export writes, where they come from (for messages) and their progress."""

    rows: Iterator[dict[str, Any]]
    where: str
    meter: Meter


def _nothing(where: str, flt: Filter, kind: str) -> UserError:
    from tracetap.exporters.tracelab import KINDS

    kinds = "/".join(KINDS[kind])
    if flt.is_empty():
        return UserError(f"no {kinds} rounds in {where} (--kind {kind})", NOTHING)
    return UserError(f"nothing in {where} matches {flt.describe()} (--kind {kind})", NOTHING)


def _peeked(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]] | None:
    """`rows` unchanged, or None when there are none."""
    first = next(rows, None)
    return None if first is None else chain([first], rows)


@contextmanager
def _source(
    label: str,
    db: str | None,
    input_path: Path | None,
    flt: Filter,
    kind: str,
) -> Iterator[_Rows]:
    """The filtered rows of the store or the `--input` file, with a progress bar on a
    terminal (rows of a COUNT for a store, bytes of the file's size for a file). No rows is
    a UserError (exit 1) before any output is created; a file that is missing, corrupt or no
    TraceLab is one (exit 2) whenever it is found out."""
    from tracetap.exporters.tracelab import KINDS, count_rows, filter_rows, rows_from_engine
    from tracetap.storage.db import display_url
    from tracetap.tracelab import TraceLabFormatError

    if kind not in KINDS:
        raise UserError(f"--kind {kind!r}: use one of {', '.join(KINDS)}")
    if input_path is None:
        url = db_url(db)
        engine = open_store(url)
        try:
            with Meter(label, count_rows(engine, flt=flt, kind=kind)) as meter:
                if meter.total == 0:
                    raise _nothing(display_url(url), flt, kind)
                rows = rows_from_engine(engine, flt=flt, kind=kind)
                yield _Rows(_counted(rows, meter), display_url(url), meter)
        finally:
            engine.dispose()
        return
    if not input_path.is_file():
        what = "is a directory" if input_path.is_dir() else "does not exist"
        raise UserError(f"--input {input_path} {what} — give a TraceLab .jsonl or .jsonl.gz file")
    try:
        with Meter(label, input_path.stat().st_size, unit="bytes") as meter:
            found = _peeked(filter_rows(read_file(input_path, meter), flt=flt, kind=kind))
            if found is None:
                raise _nothing(str(input_path), flt, kind)
            yield _Rows(found, str(input_path), meter)
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise UserError(f"{input_path}: a corrupt or cut-short gzip file ({exc})") from None
    except TraceLabFormatError as exc:
        raise UserError(_not_tracelab(input_path, str(exc))) from None


def _not_tracelab(path: Path, problem: str) -> str:
    """The line for an --input that is no TraceLab file, naming what it looks like."""
    from tracetap.importers.sniff import COMMANDS, looks_like

    looks = looks_like(path)
    if looks is not None and looks != "tracelab":
        return (
            f"{path} is no TraceLab file but an agent log — import it with "
            f"`{COMMANDS[looks]} {path}`, then export from the store"
        )
    return f"{problem} — --input takes TraceLab rows"


def _counted(rows: Iterator[dict[str, Any]], meter: Meter) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield row
        meter.rows()


@contextmanager
def _text_out(path: Path | None) -> Iterator[IO[str]]:
    """stdout for no -o (or -o -); else a text file (gzip for .gz) that appears whole."""
    if path is None or str(path) == "-":
        try:
            yield sys.stdout
            sys.stdout.flush()
        except BrokenPipeError:  # the reader stopped early (`| head`): no error to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        return
    from tracetap.tracelab import open_text

    with staged(path) as tmp, open_text(tmp, "w") as fh:
        yield fh


def _done(n: int, what: str, target: Path | str | None) -> None:
    err.print(f"wrote {n:,} {what}" + (f" to {target}" if target else ""))


@export_app.command("tracelab")
def export_tracelab(
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Output .jsonl or .jsonl.gz file (default: stdout)."),
    ] = None,
    db: Db = None,
    input_path: Input = None,
    since: Since = None,
    until: Until = None,
    agent: Agent = None,
    model: Model = None,
    project: Project = None,
    session: Session = None,
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
    """Write one JSON object per round in the TraceLab format, the layout of the public
    TraceLab dataset of coding-agent sessions: session and round ids, model, input tokens
    split into the cached prefix and the newly appended part, output tokens, timed events
    (messages, tool calls and results) and the round's tool calls.

    Example: tracetap export tracelab --since 7d -o rounds.jsonl.gz
    """
    from tracetap.exporters import tracelab
    from tracetap.exporters.public import Pseudonymizer

    flt = make_filter(since, until, agent, model, project, session)
    ps = None
    if public:
        from tracetap.privacy.keys import load_key

        try:
            ps = Pseudonymizer(load_key(key_file))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot use the pseudonym key: {exc} — check --key-file") from None
    with _source("tracelab", db, input_path, flt, kind) as src, _text_out(output) as fh:
        n = tracelab.export(src.rows, fh, extended=extended, pseudonymizer=ps)
    _done(n, "rows", output)


@export_app.command("tracelab-duckdb")
def export_duckdb(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="DuckDB file to write (replaced if it exists).")
    ],
    db: Db = None,
    input_path: Input = None,
    since: Since = None,
    until: Until = None,
    agent: Agent = None,
    model: Model = None,
    project: Project = None,
    session: Session = None,
    kind: Kind = "agent",
) -> None:
    """Write the DuckDB file TraceLab's scripts query (rounds, tool_calls, timing_events,
    trace_source).

    Example: tracetap export tracelab-duckdb -i rounds.jsonl -o tracelab.duckdb
    """
    from tracetap.exporters import duckdb_file

    flt = make_filter(since, until, agent, model, project, session)
    source = str(input_path) if input_path else (db or "tracetap-store")
    with _source("duckdb", db, input_path, flt, kind) as src, staged(output) as tmp:
        n = duckdb_file.export(src.rows, tmp, source_path=source)
    Path(f"{output}.wal").unlink(missing_ok=True)  # a stale log of an older file
    _done(n, "rounds", output)


@export_app.command("replay-csv")
def export_replay_csv(
    output: OutputFile = None,
    db: Db = None,
    input_path: Input = None,
    since: Since = None,
    until: Until = None,
    agent: Agent = None,
    model: Model = None,
    project: Project = None,
    session: Session = None,
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

    Example: tracetap export replay-csv --waits tool-only -o replay.csv
    """
    from tracetap.exporters import replay_csv

    if waits not in replay_csv.WAITS:
        raise UserError(f"--waits {waits!r}: use one of {', '.join(replay_csv.WAITS)}")
    flt = make_filter(since, until, agent, model, project, session)
    with _source("replay-csv", db, input_path, flt, kind) as src, _text_out(output) as fh:
        n = replay_csv.export(src.rows, fh, waits=waits)
    _done(n, f"rounds (waits: {waits})", output)


@export_app.command("mooncake")
def export_mooncake(
    output: OutputFile = None,
    db: Db = None,
    input_path: Input = None,
    since: Since = None,
    until: Until = None,
    agent: Agent = None,
    model: Model = None,
    project: Project = None,
    session: Session = None,
    kind: Kind = "agent",
    block_size: Annotated[
        int,
        typer.Option(help="Tokens per hash block (a multiple of the recorded 64-token blocks)."),
    ] = 512,
) -> None:
    """Write a mooncake trace (timestamp, input_length, output_length, hash_ids) for AIPerf,
    SGLang bench_serving and Dynamo.

    Example: tracetap export mooncake --block-size 512 -o trace.jsonl
    """
    from tracetap.exporters import mooncake

    if block_size <= 0:
        raise UserError(f"--block-size {block_size}: must be a positive number of tokens")
    flt = make_filter(since, until, agent, model, project, session)
    try:
        with _source("mooncake", db, input_path, flt, kind) as src, _text_out(output) as fh:
            n = mooncake.export(src.rows, fh, block_size=block_size)
    except ValueError as exc:  # hash blocks that do not fit --block-size
        raise UserError(str(exc)) from None
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
    agent: Agent = None,
    model: Model = None,
    project: Project = None,
    session: Session = None,
    kind: Kind = "main",
) -> None:
    """Write one Harbor ATIF trajectory per session.

    Example: tracetap export atif --input rounds.jsonl -o trajectories/
    """
    from tracetap.exporters import atif

    flt = make_filter(since, until, agent, model, project, session)
    with _source("atif", db, input_path, flt, kind) as src:
        if output is not None and not output.name.endswith((".jsonl", ".jsonl.gz")):
            with staged(output, directory=True) as tmp:
                n = atif.export(src.rows, tmp)
        else:
            with _text_out(output) as fh:
                n = atif.export(src.rows, fh)
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
    agent: Agent = None,
    model: Model = None,
    project: Project = None,
    session: Session = None,
    kind: Kind = "agent",
) -> None:
    """Write OpenTelemetry GenAI spans (a span per round, a child per tool call) as OTLP
    JSON, or send them to an OTLP endpoint.

    Example: tracetap export otel --endpoint http://127.0.0.1:4318
    """
    from tracetap.exporters import otel

    flt = make_filter(since, until, agent, model, project, session)
    if endpoint:
        import httpx

        with _source("otel", db, input_path, flt, kind) as src:
            try:
                n = otel.post_batches(src.rows, endpoint)
            except httpx.HTTPError as exc:
                raise UserError(f"cannot send to {endpoint}: {exc} — check --endpoint") from None
        _done(n, "rounds", endpoint)
        return
    with _source("otel", db, input_path, flt, kind) as src, _text_out(output) as fh:
        n = otel.export(src.rows, fh)
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
    agent: Agent = None,
    model: Model = None,
    project: Project = None,
    session: Session = None,
    kind: Kind = "agent",
) -> None:
    """Write the three TraceLab tables as Parquet files, partitioned by day into
    folders named like day=2026-06-01. They replace the same tables in an existing
    directory.

    Example: tracetap export parquet --input rounds.jsonl -o tables/
    """
    from tracetap.exporters import parquet

    flt = make_filter(since, until, agent, model, project, session)
    with _source("parquet", db, input_path, flt, kind) as src:
        with staged(output, directory=True) as tmp:
            n = parquet.export(src.rows, tmp)
    _done(n, "rounds", output)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
