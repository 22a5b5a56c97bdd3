"""`tracelab-duckdb`: the DuckDB file TraceLab's scripts query (rounds, tool_calls,
timing_events, trace_source) with the contract's column types, written from Arrow batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from tracetap.exporters.tables import ROUND_SCHEMA, TIMING_SCHEMA, TOOL_SCHEMA, table_batches

__all__ = ["export"]

_SQL_TYPES = {
    "int64": "BIGINT",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "timestamp[us]": "TIMESTAMP",
}


def _create(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> None:
    cols = ", ".join(f'"{f.name}" {_SQL_TYPES[str(f.type)]}' for f in schema)
    con.execute(f"CREATE TABLE {name} ({cols})")


def export(
    rows: Iterable[dict[str, Any]],
    out: str | Path,
    *,
    source_path: str = "",
    batch_rows: int = 10_000,
) -> int:
    """Write a fresh DuckDB file at `out` (replacing it); returns the number of rounds."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in (out, Path(f"{out}.wal")):
        stale.unlink(missing_ok=True)
    con = duckdb.connect(str(out))
    try:
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET memory_limit = '256MB'")  # spill to disk rather than grow
        for name, schema in (
            ("rounds", ROUND_SCHEMA),
            ("tool_calls", TOOL_SCHEMA),
            ("timing_events", TIMING_SCHEMA),
        ):
            _create(con, name, schema)
        con.execute("CREATE TABLE trace_source (path VARCHAR)")
        con.execute("INSERT INTO trace_source VALUES (?)", [source_path])
        n = 0
        for rounds, tools, events in table_batches(rows, batch_rows=batch_rows):
            for name, batch in (
                ("rounds", rounds),
                ("tool_calls", tools),
                ("timing_events", events),
            ):
                con.register("_batch", batch)
                con.execute(f"INSERT INTO {name} SELECT * FROM _batch")
                con.unregister("_batch")
            n += rounds.num_rows
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return n
