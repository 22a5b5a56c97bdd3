"""Load an analysis input (TraceLab JSONL/.gz, TraceLab DuckDB file, or a store URL) into DuckDB.

Every analysis then queries the same three columnar tables, `r` (rounds), `t` (tools), `e` (events).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

__all__ = ["Dataset", "InputError", "load", "GROUP_KEYS"]

GROUP_KEYS = ("provider", "model", "project", "session")

_EVENT_T = (
    'STRUCT(event_type VARCHAR, "timestamp" VARCHAR, source VARCHAR, '
    "tool_call_id VARCHAR, tool_name VARCHAR, tool_index BIGINT, is_error BOOLEAN, "
    "result_chars BIGINT, content_chars BIGINT)[]"
)
_TOOL_T = (
    "STRUCT(tool_index BIGINT, tool_name VARCHAR, tool_call_id VARCHAR, emitted_at VARCHAR, "
    'result_at VARCHAR, "input" VARCHAR, input_chars BIGINT, result_chars BIGINT, '
    "tool_wall_latency_ms BIGINT, tool_internal_latency_ms BIGINT, is_error BOOLEAN)[]"
)
_SEGMENTS = (
    "tools",
    "system",
    "history",
    "new_input",
    "output",
    "output_text",
    "output_reasoning",
    "output_tool_args",
)
_SCALARS = {
    "provider": "VARCHAR",
    "project": "VARCHAR",
    "session_id": "VARCHAR",
    "round_index": "BIGINT",
    "round_id": "VARCHAR",
    "model": "VARCHAR",
    "input_tokens_total": "BIGINT",
    "prefix_tokens": "BIGINT",
    "newly_append_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "reasoning_output_tokens": "BIGINT",
    "current_user_message_count": "BIGINT",
    "current_tool_result_count": "BIGINT",
    "current_input_chars": "BIGINT",
    "first_input_event_type": "VARCHAR",
}
_GROUP_COLUMN = {
    "provider": "provider",
    "model": "model",
    "project": "project",
    "session": "session_id",
}


class InputError(ValueError):
    """The analysis input cannot be read (missing file, unknown kind, wrong layout)."""


def _epoch(expr: str) -> str:
    """SQL: ISO-8601 text (with Z) or TIMESTAMP -> epoch seconds (DOUBLE)."""
    return f"(epoch_us(CAST(rtrim(CAST({expr} AS VARCHAR), 'Z') AS TIMESTAMP)) / 1e6)"


@dataclass
class Dataset:
    """An open DuckDB connection holding tables `rounds`, `tools`, `events` and views r/t/e."""

    con: duckdb.DuckDBPyConnection
    source: str
    kind: str  # "jsonl" | "duckdb" | "db"
    has_input: bool = False
    has_segments: bool = False
    has_hashes: bool = False
    group_by: str | None = None
    group: str | None = None
    notes: list[str] = field(default_factory=list)

    def arrays(self, sql: str, *params: Any) -> dict[str, np.ndarray]:
        """Run a query and return its columns as numpy arrays."""
        out = self.con.execute(sql, list(params)).fetchnumpy()
        for key, col in out.items():
            if isinstance(col, np.ma.MaskedArray):  # NULLs: NaN for numbers, None otherwise
                if col.dtype.kind in "iufb":
                    out[key] = np.ma.filled(col.astype(float), np.nan)
                else:
                    out[key] = np.ma.filled(col.astype(object), None)
        return out

    def scalar(self, sql: str, *params: Any) -> Any:
        row = self.con.execute(sql, list(params)).fetchone()
        return None if row is None else row[0]

    def groups(self, limit: int = 12) -> tuple[list[str], int]:
        """Group values by descending round count (at most `limit`) and the total number."""
        rows = self.con.execute(
            "SELECT grp, count(*) AS n FROM rounds GROUP BY grp ORDER BY n DESC, grp"
        ).fetchall()
        return [str(g) for g, _ in rows[:limit]], len(rows)

    def select(self, group: str | None) -> None:
        """Point views r/t/e at one group's rows (None: all rows)."""
        where = "" if group is None else "WHERE grp = " + _quote(group)
        for view, table in (("r", "rounds"), ("t", "tools"), ("e", "events")):
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {table} {where}")
        self.group = group


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET memory_limit = '{os.environ.get('TRACETAP_DUCKDB_MEMORY', '512MB')}'")
    con.execute(f"SET temp_directory = '{tempfile.gettempdir()}/tracetap-duckdb'")
    return con


def _load_jsonl(con: duckdb.DuckDBPyConnection, path: str) -> None:
    cols = dict(_SCALARS)
    cols.update(
        {
            "timing_events": _EVENT_T,
            "tools": _TOOL_T,
            "tt_segments": "JSON",
            "tt_block_hashes": "JSON",
            "tt_block_size": "BIGINT",
        }
    )
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in cols.items()) + "}"
    con.execute(
        f"CREATE TEMP TABLE raw AS SELECT row_number() OVER () - 1 AS rid, * FROM read_json("
        f"{_quote(path)}, format='newline_delimited', columns={spec}, "
        "maximum_object_size=33554432)"
    )
    seg = ", ".join(
        f"CAST(json_extract(tt_segments, '$.{k}') AS BIGINT) AS seg_{k}" for k in _SEGMENTS
    )
    con.execute(
        f"CREATE TABLE rounds_base AS SELECT rid, {', '.join(_SCALARS)}, {seg}, "
        "CAST(tt_block_hashes AS VARCHAR) AS block_hashes, tt_block_size AS block_size "
        "FROM raw"
    )
    con.execute(
        "CREATE TABLE tools_base AS SELECT rid, u.tool_index, u.tool_name, u.tool_call_id, "
        f"{_epoch('u.emitted_at')} AS emitted, {_epoch('u.result_at')} AS result, "
        "u.tool_wall_latency_ms AS wall_ms, u.tool_internal_latency_ms AS internal_ms, "
        'u.is_error, u.input_chars, u.result_chars, u."input" AS input '
        "FROM (SELECT rid, unnest(tools) AS u FROM raw)"
    )
    con.execute(
        "CREATE TABLE events_base AS SELECT rid, ord AS event_index, u.event_type, "
        f"{_epoch('u."timestamp"')} AS ts, u.tool_call_id, u.tool_name, u.is_error, "
        "u.result_chars, u.content_chars FROM ("
        "SELECT rid, unnest(timing_events) AS u, generate_subscripts(timing_events, 1) AS ord "
        "FROM raw)"
    )
    con.execute("DROP TABLE raw")


def _load_duckdb(con: duckdb.DuckDBPyConnection, path: str) -> None:
    con.execute(f"ATTACH {_quote(path)} AS src (READ_ONLY)")
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'src'"
        ).fetchall()
    }
    missing = {"rounds", "tool_calls", "timing_events"} - tables
    if missing:
        raise InputError(
            f"{path}: not a TraceLab DuckDB file (missing {', '.join(sorted(missing))})"
        )
    seg = ", ".join(f"NULL::BIGINT AS seg_{k}" for k in _SEGMENTS)
    scalars = ", ".join(f"CAST({k} AS {v}) AS {k}" for k, v in _SCALARS.items())
    con.execute(
        f"CREATE TABLE rounds_base AS SELECT round_pk AS rid, {scalars}, "
        f"{seg}, NULL::VARCHAR AS block_hashes, NULL::BIGINT AS block_size "
        "FROM src.rounds"
    )
    con.execute(
        "CREATE TABLE tools_base AS SELECT round_pk AS rid, tool_index, tool_name, tool_call_id, "
        f"{_epoch('emitted_at')} AS emitted, {_epoch('result_at')} AS result, "
        "tool_wall_latency_ms AS wall_ms, tool_internal_latency_ms AS internal_ms, is_error, "
        "input_chars, result_chars, NULL::VARCHAR AS input FROM src.tool_calls"
    )
    con.execute(
        "CREATE TABLE events_base AS SELECT round_pk AS rid, event_index, event_type, "
        f"{_epoch('"timestamp"')} AS ts, tool_call_id, tool_name, is_error, result_chars, "
        "content_chars FROM src.timing_events"
    )
    con.execute("DETACH src")


def _finish(con: duckdb.DuckDBPyConnection, group_by: str | None) -> None:
    grp = _GROUP_COLUMN[group_by] if group_by else "'all'"
    # Per-round derived columns shared by several analyses (sequential within a session).
    con.execute(f"""
        CREATE TABLE rounds AS
        WITH ev AS (
            SELECT rid,
                max(ts) FILTER (WHERE event_type IN ('user_message', 'tool_result')) AS last_input,
                min(ts) FILTER (WHERE event_type IN ('user_message', 'tool_result')) AS first_input,
                max(ts) FILTER (WHERE event_type IN ('reasoning', 'text', 'tool_call'))
                    AS last_output,
                max(ts) FILTER (WHERE event_type = 'reasoning') AS reasoning_end,
                max(ts) AS last_event, min(ts) AS first_event
            FROM events_base GROUP BY rid),
        tc AS (SELECT rid, count(*) AS n_tools FROM tools_base GROUP BY rid)
        SELECT b.*, CAST({grp} AS VARCHAR) AS grp,
            coalesce(b.first_input_event_type, 'none') AS trig,
            ev.last_input, ev.first_input, ev.last_output, ev.reasoning_end,
            ev.last_event, ev.first_event, coalesce(tc.n_tools, 0) AS n_tools,
            coalesce(ev.last_input, ev.first_event) AS arrival,
            lag(b.input_tokens_total) OVER w AS prev_input,
            lag(b.output_tokens) OVER w AS prev_output,
            lag(coalesce(ev.last_event, ev.last_output)) OVER w AS prev_end,
            row_number() OVER w - 1 AS pos
        FROM rounds_base b LEFT JOIN ev USING (rid) LEFT JOIN tc USING (rid)
        WINDOW w AS (PARTITION BY b.session_id ORDER BY b.round_index, b.rid)""")
    con.execute(
        "CREATE TABLE tools AS SELECT tb.*, r.grp, r.provider, r.session_id, "
        "r.round_index FROM tools_base tb JOIN rounds r USING (rid)"
    )
    con.execute(
        "CREATE TABLE events AS SELECT eb.*, r.grp, r.provider, r.session_id, "
        "r.round_index FROM events_base eb JOIN rounds r USING (rid)"
    )
    for t in ("rounds_base", "tools_base", "events_base"):
        con.execute(f"DROP TABLE {t}")


def _rows_to_jsonl(db_url: str) -> str:
    from tracetap.exporters.tracelab import iter_rows  # lazy: the store is another area

    fd, path = tempfile.mkstemp(prefix="tracetap-analyze-", suffix=".jsonl")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for row in iter_rows(db_url):
            out.write(json.dumps(row, separators=(",", ":")))
            out.write("\n")
    return path


def load(source: str, *, group_by: str | None = None) -> Dataset:
    """Open `source` (JSONL[.gz], TraceLab .duckdb, or sqlite:///… / postgresql://… URL)."""
    if group_by is not None and group_by not in _GROUP_COLUMN:
        raise InputError(f"unknown group {group_by!r}; use one of {', '.join(GROUP_KEYS)}")
    con = _connect()
    tmp: str | None = None
    if "://" in source:
        kind = "db"
        tmp = _rows_to_jsonl(source)
        path = tmp
    else:
        path = source
        if not Path(path).is_file():
            raise InputError(f"{source}: no such file")
        kind = "duckdb" if Path(path).suffix in (".duckdb", ".db") else "jsonl"
    try:
        if kind == "duckdb":
            _load_duckdb(con, path)
        else:
            if tmp is None or os.path.getsize(tmp) > 0:
                _load_jsonl(con, path)
            else:
                raise InputError(f"{source}: the store has no rounds")
        _finish(con, group_by)
    except duckdb.Error as exc:
        raise InputError(f"{source}: cannot read as TraceLab {kind}: {exc}") from None
    finally:
        if tmp is not None:
            os.unlink(tmp)
    ds = Dataset(con=con, source=source, kind=kind, group_by=group_by)
    ds.has_input = bool(ds.scalar("SELECT count(*) FROM tools WHERE input IS NOT NULL"))
    ds.has_segments = bool(ds.scalar("SELECT count(*) FROM rounds WHERE seg_tools IS NOT NULL"))
    ds.has_hashes = bool(ds.scalar("SELECT count(*) FROM rounds WHERE block_hashes IS NOT NULL"))
    ds.select(None)
    return ds
