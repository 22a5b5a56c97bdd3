"""Load an analysis input (TraceLab JSONL/.gz, TraceLab DuckDB file, or a store URL) into DuckDB.

Every analysis then queries the same three columnar tables, `r` (rounds), `t` (tools), `e` (events).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

from tracetap.storage.filters import Filter

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Engine

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
    "claude_uncached_input_tokens": "BIGINT",
    "claude_cache_creation_input_tokens": "BIGINT",
    "claude_cache_read_input_tokens": "BIGINT",
}
# tracetap's own usage extras (cache writes by TTL), for cost; absent from TraceLab's files.
_EXTRAS = {"tt_cache_creation_5m_tokens": "BIGINT", "tt_cache_creation_1h_tokens": "BIGINT"}
_GROUP_COLUMN = {
    "provider": "provider",
    "model": "model",
    "project": "project",
    "session": "session_id",
}


class InputError(ValueError):
    """The analysis input cannot be read (missing file, unknown kind, wrong layout), or holds
    no rounds (`nothing` True: an empty input, or a filter that matches nothing)."""

    def __init__(self, message: str, *, nothing: bool = False) -> None:
        super().__init__(message)
        self.nothing = nothing


# The first line of an agent's own log, by the keys it has: what it is and how to import it.
_AGENT_LOGS = (
    ({"payload", "type", "timestamp"}, "a Codex rollout", "tracetap import codex"),
    ({"sessionId"}, "a Claude Code log", "tracetap import claude-code"),
    ({"leafUuid"}, "a Claude Code log", "tracetap import claude-code"),
)


def _check_jsonl(path: str) -> None:
    """Raise InputError when the first row of `path` is not a TraceLab row (an agent's own log,
    or some other JSON), naming what it looks like and what to run."""
    import orjson

    from tracetap.tracelab import open_text

    with open_text(path) as f:
        for n, line in enumerate(f, 1):  # noqa: B007 (n: the first non-blank line's number)
            if line.strip():
                break
        else:
            return
    try:
        first = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise InputError(
            f"{path}: line {n} is not JSON — analyze reads TraceLab JSONL, a TraceLab .duckdb "
            "or a store URL"
        ) from None
    keys = set(first) if isinstance(first, dict) else set()
    if {"session_id", "round_index"} <= keys:
        return
    for needs, what, command in _AGENT_LOGS:
        if needs <= keys:
            raise InputError(f"{path} looks like {what} — run `{command}` first")
    raise InputError(
        f"{path}: line {n} is not a TraceLab row (no session_id, round_index) — analyze reads "
        "TraceLab JSONL, a TraceLab .duckdb or a store URL"
    )


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
    filter: Filter = field(default_factory=Filter)
    notes: list[str] = field(default_factory=list)

    def arrays(self, sql: str, *params: Any) -> dict[str, np.ndarray]:
        """Run a query and return its columns as numpy arrays."""
        out = self.con.execute(sql, list(params)).fetchnumpy()
        for key, col in out.items():
            if isinstance(col, np.ma.MaskedArray):  # NULLs: NaN for numbers, None otherwise
                if col.dtype.kind in "iufb":
                    out[key] = np.ma.filled(col.astype(float), np.nan)
                else:  # filled(x, None) would use the array's own fill value ("?")
                    values = np.ma.getdata(col).astype(object)
                    values[np.ma.getmaskarray(col)] = None
                    out[key] = values
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
    cols = dict(_SCALARS) | _EXTRAS
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
    from tracetap.analysis.store import SEGMENTS

    seg = ", ".join(
        f"CAST(json_extract(tt_segments, '$.{k}') AS BIGINT) AS seg_{k}" for k in SEGMENTS
    )
    con.execute(
        f"CREATE TABLE rounds_base AS SELECT rid, {', '.join([*_SCALARS, *_EXTRAS])}, {seg}, "
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
    from tracetap.analysis.store import SEGMENTS

    seg = ", ".join(f"NULL::BIGINT AS seg_{k}" for k in SEGMENTS)
    columns = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_catalog = 'src' AND table_name = 'rounds'"
        ).fetchall()
    }
    scalars = ", ".join(
        f"CAST({k if k in columns else 'NULL'} AS {v}) AS {k}"
        for k, v in (_SCALARS | _EXTRAS).items()
    )
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


def _filtered_jsonl(path: str, flt: Filter) -> str:
    """The rows of `path` that pass `flt` (Filter.matches_row), in a temporary JSONL file."""
    import orjson

    from tracetap.tracelab import read_rows

    fd, tmp = tempfile.mkstemp(prefix="tracetap-analyze-", suffix=".jsonl")
    with os.fdopen(fd, "wb") as out:
        for row in read_rows(path):
            if flt.matches_row(row):
                out.write(orjson.dumps(row))
                out.write(b"\n")
    return tmp


def _rounds(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT count(*) FROM rounds_base").fetchone()
    return 0 if row is None else int(row[0])


def load(
    source: str,
    *,
    group_by: str | None = None,
    flt: Filter | None = None,
    engine: Engine | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Open `source` (JSONL[.gz], TraceLab .duckdb, or sqlite:///… / postgresql://… URL) and
    keep the rounds that pass `flt`. A store is read through `engine` when given (else one
    opened without creating anything); `progress(done, total)` counts its rounds as they load.
    Raises InputError when the source cannot be read or holds no rounds.

    Example: load("sqlite:///traces.db", flt=Filter(agents=("claude",)))
    """
    if group_by is not None and group_by not in _GROUP_COLUMN:
        raise InputError(f"unknown group {group_by!r}; use one of {', '.join(GROUP_KEYS)}")
    flt = flt or Filter()
    con = _connect()
    tmp: str | None = None
    if "://" in source:
        kind = "db"
    else:
        if not Path(source).is_file():
            raise InputError(
                f"{source}: no such file — give a TraceLab .jsonl(.gz), a .duckdb or a store URL"
            )
        kind = "duckdb" if Path(source).suffix in (".duckdb", ".db") else "jsonl"
        if kind == "jsonl":
            _check_jsonl(source)
        if kind == "duckdb" and not flt.is_empty():
            raise InputError(
                f"{source}: filters apply to TraceLab JSONL and stores, not DuckDB files "
                "— analyse the JSONL it was built from"
            )
    try:
        if kind == "db":
            from tracetap.analysis.store import load_store
            from tracetap.storage.db import make_engine

            own = engine is None
            eng = make_engine(source, create=False) if engine is None else engine
            try:
                load_store(con, eng, flt, progress=progress)
            finally:
                if own:
                    eng.dispose()
        elif kind == "duckdb":
            _load_duckdb(con, source)
        else:
            path = source
            if not flt.is_empty():
                tmp = path = _filtered_jsonl(source, flt)
            if os.path.getsize(path) == 0:
                con.execute("CREATE TABLE rounds_base AS SELECT 1 AS rid LIMIT 0")
            else:
                _load_jsonl(con, path)
        if not _rounds(con):
            if not flt.is_empty():
                raise InputError(f"nothing in {source} matches {flt.describe()}", nothing=True)
            raise InputError(f"no rounds in {source}", nothing=True)
        _finish(con, group_by)
    except duckdb.Error as exc:
        raise InputError(f"{source}: cannot read as TraceLab {kind}: {exc}") from None
    finally:
        if tmp is not None:
            os.unlink(tmp)
    ds = Dataset(con=con, source=source, kind=kind, group_by=group_by, filter=flt)
    ds.has_input = bool(ds.scalar("SELECT count(*) FROM tools WHERE input IS NOT NULL"))
    ds.has_segments = bool(ds.scalar("SELECT count(*) FROM rounds WHERE seg_tools IS NOT NULL"))
    ds.has_hashes = bool(ds.scalar("SELECT count(*) FROM rounds WHERE block_hashes IS NOT NULL"))
    ds.select(None)
    return ds
