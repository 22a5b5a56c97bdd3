"""Load a store's rounds straight into the analysis tables, column by column, with no JSON detour.

The tables hold what the TraceLab rows of `tracetap export tracelab` would (same rounds, tools
paired with their results the same way), read with a few SQL queries per chunk of sessions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session as OrmSession

from tracetap.content import load_json
from tracetap.exporters.tracelab import selected_conditions
from tracetap.storage import models as m
from tracetap.storage.filters import Filter

__all__ = ["SEGMENTS", "load_store", "store_rounds"]

# Sessions are read in chunks of about this many selected rounds (bounded memory, progress).
_CHUNK_ROUNDS = 5_000
# The prompt and output segments of tt_segments, each a seg_<name> column of the rounds table.
SEGMENTS = (
    "tools",
    "system",
    "history",
    "new_input",
    "output",
    "output_text",
    "output_reasoning",
    "output_tool_args",
)

_ROUND_COLS: list[tuple[str, Any, pa.DataType]] = [
    ("id", m.Round.id, pa.int64()),
    ("session_pk", m.Round.session_pk, pa.int64()),
    ("provider", m.Session.provider, pa.string()),
    ("agent_session_id", m.Session.agent_session_id, pa.string()),
    ("session_project", m.Session.project, pa.string()),
    ("extra", sa.cast(m.Round.extra, sa.Text), pa.string()),
    ("transport", m.Round.transport, pa.string()),
    ("response_id", m.Round.response_id, pa.string()),
    ("uid", m.Round.uid, pa.string()),
    ("turn_id", m.Round.turn_id, pa.string()),
    ("model", m.Round.model, pa.string()),
    ("input_tokens_total", m.Round.input_tokens_total, pa.int64()),
    ("cached_tokens", m.Round.cached_tokens, pa.int64()),
    ("output_tokens", m.Round.output_tokens, pa.int64()),
    ("reasoning_tokens", m.Round.reasoning_tokens, pa.int64()),
    ("uncached_input_tokens", m.Round.uncached_input_tokens, pa.int64()),
    ("cache_creation_input_tokens", m.Round.cache_creation_input_tokens, pa.int64()),
    ("cache_read_input_tokens", m.Round.cache_read_input_tokens, pa.int64()),
    ("cache_creation_5m_tokens", m.Round.cache_creation_5m_tokens, pa.int64()),
    ("cache_creation_1h_tokens", m.Round.cache_creation_1h_tokens, pa.int64()),
    ("user_message_count", m.Round.user_message_count, pa.int64()),
    ("tool_result_count", m.Round.tool_result_count, pa.int64()),
    ("user_message_chars", m.Round.user_message_chars, pa.int64()),
    ("tool_result_chars", m.Round.tool_result_chars, pa.int64()),
    ("first_input_type", m.Round.first_input_type, pa.string()),
    ("request_at", m.Round.request_at, pa.float64()),
]
_EVENT_COLS: list[tuple[str, Any, pa.DataType]] = [
    ("round_pk", m.TimingEvent.round_pk, pa.int64()),
    ("event_index", m.TimingEvent.event_index, pa.int64()),
    ("event_type", m.TimingEvent.event_type, pa.string()),
    ("ts", m.TimingEvent.ts, pa.float64()),
    ("tool_call_id", m.TimingEvent.tool_call_id, pa.string()),
    ("tool_name", m.TimingEvent.tool_name, pa.string()),
    ("chars", m.TimingEvent.chars, pa.int64()),
    ("is_error", m.TimingEvent.is_error, pa.bool_()),
    ("internal_ms", m.TimingEvent.internal_latency_ms, pa.int64()),
]
_TOOL_COLS: list[tuple[str, Any, pa.DataType]] = [
    ("round_pk", m.ToolCall.round_pk, pa.int64()),
    ("tool_index", m.ToolCall.tool_index, pa.int64()),
    ("name", m.ToolCall.name, pa.string()),
    ("call_id", m.ToolCall.call_id, pa.string()),
    ("input_hash", m.ToolCall.input_hash, pa.string()),
    ("input_chars", m.ToolCall.input_chars, pa.int64()),
    ("emitted_at", m.ToolCall.emitted_at, pa.float64()),
    ("result_at", m.ToolCall.result_at, pa.float64()),
    ("result_chars", m.ToolCall.result_chars, pa.int64()),
    ("is_error", m.ToolCall.is_error, pa.bool_()),
    ("wall_ms", m.ToolCall.wall_latency_ms, pa.int64()),
    ("internal_ms", m.ToolCall.internal_latency_ms, pa.int64()),
]


def store_rounds(engine: Engine, flt: Filter | None = None) -> int:
    """How many rounds `load_store` loads for `flt` (the rows `export tracelab` would write)."""
    from tracetap.exporters.tracelab import count_rows

    return count_rows(engine, flt=flt, kind="agent")


def _sessions(db: Connection, where: list[Any]) -> list[tuple[int, int]]:
    """(session pk, selected rounds) in export order: by each session's first selected round."""
    q = (
        sa.select(m.Session.id, sa.func.count(m.Round.id))
        .join(m.Round, m.Round.session_pk == m.Session.id)
        .where(*where)
        .group_by(m.Session.id)
        .order_by(sa.func.min(m.Round.request_at), m.Session.id)
    )
    return [(int(s), int(n)) for s, n in db.execute(q)]


def _chunks(sessions: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    out: list[list[tuple[int, int]]] = [[]]
    size = 0
    for s in sessions:
        if size >= _CHUNK_ROUNDS or len(out[-1]) >= 5000:
            out.append([])
            size = 0
        out[-1].append(s)
        size += s[1]
    return [c for c in out if c]


def _arrow(rows: Sequence[Sequence[Any]], cols: list[tuple[str, Any, pa.DataType]]) -> pa.Table:
    """Driver rows -> an Arrow table; booleans are left to inference (SQLite gives 0/1, which
    the insert into the BOOLEAN column converts)."""
    columns = list(zip(*rows)) if rows else [() for _ in cols]
    return pa.Table.from_arrays(
        [
            pa.array(list(c), type=None if t == pa.bool_() and rows else t)
            for c, (_, _, t) in zip(columns, cols)
        ],
        names=[n for n, _, _ in cols],
    )


def _append(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    con.register("_chunk", data)
    con.execute(f"INSERT INTO {table} SELECT * FROM _chunk")
    con.unregister("_chunk")


def _create(con: duckdb.DuckDBPyConnection, table: str, extra: str = "") -> None:
    empty = _arrow([], _COLS[table])
    con.register("_empty", empty)
    con.execute(f"CREATE TEMP TABLE {table} AS SELECT *{extra} FROM _empty LIMIT 0")
    con.unregister("_empty")


_COLS = {"s_rounds": _ROUND_COLS, "s_events": _EVENT_COLS, "s_tools": _TOOL_COLS}


def _fetch(db: Connection, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of `query` as the driver's plain tuples (no per-value result processing: the
    columns read here are numbers, text and booleans the drivers already return as such)."""
    sql = query.compile(dialect=db.dialect, compile_kwargs={"literal_binds": True})
    cursor = db.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(sql))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _read_chunk(
    db: Connection,
    con: duckdb.DuckDBPyConnection,
    chunk: list[tuple[int, int]],
    first_order: int,
    where: list[Any],
) -> None:
    pks = [s for s, _ in chunk]
    order = {s: first_order + i for i, (s, _) in enumerate(chunk)}
    chosen = sa.and_(*where).label("chosen")
    rounds = _fetch(
        db,
        sa.select(*(c for _, c, _ in _ROUND_COLS), chosen)
        .join(m.Session, m.Round.session_pk == m.Session.id)
        .where(m.Round.session_pk.in_(pks)),
    )
    table = _arrow([r[:-1] for r in rounds], _ROUND_COLS)
    table = table.append_column("chosen", pa.array([bool(r[-1]) for r in rounds], pa.bool_()))
    table = table.append_column(
        "session_order", pa.array([order[r[1]] for r in rounds], pa.int64())
    )
    _append(con, "s_rounds", table)
    for name, cols, model in (
        ("s_events", _EVENT_COLS, m.TimingEvent),
        ("s_tools", _TOOL_COLS, m.ToolCall),
    ):
        rows = _fetch(
            db,
            sa.select(*(c for _, c, _ in cols))
            .join(m.Round, model.round_pk == m.Round.id)
            .where(m.Round.session_pk.in_(pks)),
        )
        _append(con, name, _arrow(rows, cols))


def _side_tables(db: Connection, con: duckdb.DuckDBPyConnection) -> None:
    """Tool inputs (from their blobs) and the tokenizer's extras for the chosen rounds."""
    from tracetap.tokens.report import rows_extras

    hashes = [
        h
        for (h,) in con.execute(
            "SELECT DISTINCT t.input_hash FROM s_tools t JOIN s_rounds r ON r.id = t.round_pk "
            "WHERE r.chosen AND t.input_hash IS NOT NULL"
        ).fetchall()
    ]
    inputs: list[tuple[str, str]] = []
    for i in range(0, len(hashes), 500):
        blobs = sa.select(m.Blob.hash, m.Blob.codec, m.Blob.data).where(
            m.Blob.hash.in_(hashes[i : i + 500])
        )
        for digest, codec, data in db.execute(blobs):
            value = load_json(codec, data)
            inputs.append((digest, value if isinstance(value, str) else json.dumps(value)))
    con.register(
        "_inputs",
        pa.Table.from_arrays(
            [
                pa.array([h for h, _ in inputs], pa.string()),
                pa.array([v for _, v in inputs], pa.string()),
            ],
            names=["hash", "input"],
        ),
    )
    con.execute("CREATE TEMP TABLE s_inputs AS SELECT * FROM _inputs")
    con.unregister("_inputs")

    chosen = [int(r) for (r,) in con.execute("SELECT id FROM s_rounds WHERE chosen").fetchall()]
    tokenized: list[int] = []
    for i in range(0, len(chosen), 5000):
        part = chosen[i : i + 5000]
        tokenized += list(
            db.scalars(sa.select(m.RoundTokens.round_pk).where(m.RoundTokens.round_pk.in_(part)))
        )
    extras: dict[int, dict[str, Any]] = {}
    if tokenized:
        with OrmSession(bind=db) as orm:
            extras = rows_extras(orm, tokenized)
    names = ["round_pk", *(f"seg_{k}" for k in SEGMENTS), "block_hashes", "block_size"]
    cols: list[list[Any]] = [[] for _ in names]
    for pk, ex in extras.items():
        seg = ex.get("tt_segments") or {}
        chain = ex.get("tt_block_hashes")
        values = [
            pk,
            *(seg.get(k) for k in SEGMENTS),
            None if chain is None else json.dumps(chain, separators=(",", ":")),
            ex.get("tt_block_size"),
        ]
        for col, v in zip(cols, values):
            col.append(v)
    types = [pa.int64(), *(pa.int64() for _ in SEGMENTS), pa.string(), pa.int64()]
    con.register(
        "_extras",
        pa.Table.from_arrays([pa.array(c, t) for c, t in zip(cols, types)], names=names),
    )
    con.execute("CREATE TEMP TABLE s_extras AS SELECT * FROM _extras")
    con.unregister("_extras")


def load_store(
    con: duckdb.DuckDBPyConnection,
    engine: Engine,
    flt: Filter | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Fill `con`'s rounds_base, tools_base and events_base from the store; returns the number
    of rounds. `progress(done, total)` is called with rounds read after each chunk of sessions.

    Example: load_store(duckdb.connect(), open_store("sqlite:///traces.db"), Filter())
    """
    where = selected_conditions(flt, "agent")
    for table in _COLS:
        _create(
            con,
            table,
            ", NULL::BOOLEAN AS chosen, NULL::BIGINT AS session_order"
            if table == "s_rounds"
            else "",
        )
    with engine.connect() as db:
        sessions = _sessions(db, where)
        total = sum(n for _, n in sessions)
        if progress:
            progress(0, total)
        done = 0
        order = 0
        for chunk in _chunks(sessions):
            _read_chunk(db, con, chunk, order, where)
            order += len(chunk)
            done += sum(n for _, n in chunk)
            if progress:
                progress(done, total)
        _side_tables(db, con)
    _build(con)
    return total


def _ms(expr: str) -> str:
    """SQL: epoch seconds -> the same seconds at millisecond precision, as TraceLab text has."""
    return f"(round_even({expr} * 1000, 0) / 1000)"


def _build(con: duckdb.DuckDBPyConnection) -> None:
    seg = ", ".join(f"x.seg_{k}" for k in SEGMENTS)
    con.execute(f"""
        CREATE TABLE rounds_base AS
        WITH c AS (
            SELECT *, row_number() OVER (ORDER BY session_order, request_at, id) - 1 AS rid,
                row_number() OVER (PARTITION BY session_pk ORDER BY request_at, id) - 1 AS idx,
                row_number() OVER (PARTITION BY session_pk, turn_id ORDER BY request_at, id) - 1
                    AS turn_n
            FROM s_rounds WHERE chosen)
        SELECT c.rid, c.provider,
            coalesce(nullif(json_extract_string(c.extra, '$.project'), ''),
                     nullif(c.session_project, ''),
                     CASE WHEN c.transport <> 'import' THEN 'unknown' END) AS project,
            c.provider || ':' || c.agent_session_id AS session_id,
            c.idx AS round_index,
            CASE WHEN c.transport <> 'import' AND c.provider = 'codex' AND c.turn_id IS NOT NULL
                 THEN c.turn_id || ':' || c.turn_n
                 ELSE coalesce(c.response_id, c.uid) END AS round_id,
            c.model,
            coalesce(c.input_tokens_total, 0) AS input_tokens_total,
            coalesce(c.cached_tokens, 0) AS prefix_tokens,
            coalesce(c.input_tokens_total, 0) - coalesce(c.cached_tokens, 0)
                AS newly_append_tokens,
            coalesce(c.output_tokens, 0) AS output_tokens,
            c.reasoning_tokens AS reasoning_output_tokens,
            c.user_message_count AS current_user_message_count,
            c.tool_result_count AS current_tool_result_count,
            coalesce(CAST(json_extract(c.extra, '$.current_input_chars') AS BIGINT),
                     c.user_message_chars + c.tool_result_chars) AS current_input_chars,
            c.first_input_type AS first_input_event_type,
            CASE WHEN c.provider = 'claude' THEN c.uncached_input_tokens END
                AS claude_uncached_input_tokens,
            CASE WHEN c.provider = 'claude' THEN c.cache_creation_input_tokens END
                AS claude_cache_creation_input_tokens,
            CASE WHEN c.provider = 'claude' THEN c.cache_read_input_tokens END
                AS claude_cache_read_input_tokens,
            c.cache_creation_5m_tokens AS tt_cache_creation_5m_tokens,
            c.cache_creation_1h_tokens AS tt_cache_creation_1h_tokens,
            {seg}, x.block_hashes, x.block_size, c.id AS round_pk, c.session_pk,
            c.transport
        FROM c LEFT JOIN s_extras x ON x.round_pk = c.id""")
    con.execute(f"""
        CREATE TABLE events_base AS
        SELECT b.rid,
            row_number() OVER (PARTITION BY b.rid ORDER BY e.ts, e.event_index) AS event_index,
            e.event_type, {_ms("e.ts")} AS ts,
            CASE WHEN e.event_type IN ('tool_result', 'tool_call') THEN e.tool_call_id END
                AS tool_call_id,
            CASE WHEN e.event_type = 'tool_call' THEN e.tool_name END AS tool_name,
            CASE WHEN e.event_type = 'tool_result' THEN e.is_error END AS is_error,
            CASE WHEN e.event_type = 'tool_result' THEN e.chars END AS result_chars,
            CASE WHEN e.event_type IN ('user_message', 'reasoning', 'text') THEN e.chars END
                AS content_chars
        FROM s_events e JOIN rounds_base b ON b.round_pk = e.round_pk""")
    # A tool call's result: the first tool_result with its id in any round of the session,
    # unless that result arrived before the call was emitted.
    con.execute(f"""
        CREATE TABLE tools_base AS
        WITH res AS (
            SELECT r.session_pk, e.tool_call_id, e.ts, e.chars, e.is_error, e.internal_ms,
                row_number() OVER (PARTITION BY r.session_pk, e.tool_call_id
                                   ORDER BY e.ts, r.request_at, r.id, e.event_index) AS k
            FROM s_events e JOIN s_rounds r ON r.id = e.round_pk
            WHERE e.event_type = 'tool_result' AND e.tool_call_id IS NOT NULL),
        hit AS (SELECT * FROM res WHERE k = 1),
        paired AS (
            SELECT b.rid, b.transport, t.*,
                CASE WHEN h.ts IS NOT NULL
                          AND (t.emitted_at IS NULL OR NOT h.ts + 0.0005 < t.emitted_at)
                     THEN TRUE ELSE FALSE END AS has_hit,
                h.ts AS h_ts, h.chars AS h_chars, h.is_error AS h_error,
                h.internal_ms AS h_internal
            FROM s_tools t JOIN rounds_base b ON b.round_pk = t.round_pk
            LEFT JOIN hit h ON h.session_pk = b.session_pk AND h.tool_call_id = t.call_id)
        SELECT p.rid, p.tool_index, p.name AS tool_name, p.call_id AS tool_call_id,
            {_ms("p.emitted_at")} AS emitted,
            CASE WHEN p.transport = 'import' THEN {_ms("p.result_at")}
                 WHEN p.has_hit THEN {_ms("p.h_ts")} END AS result,
            CASE WHEN p.transport = 'import' THEN p.wall_ms
                 WHEN p.has_hit AND p.emitted_at IS NOT NULL
                 THEN CAST(round_even(p.h_ts * 1000, 0) - round_even(p.emitted_at * 1000, 0)
                           AS BIGINT) END AS wall_ms,
            CASE WHEN p.transport = 'import' THEN p.internal_ms
                 WHEN p.has_hit THEN p.h_internal END AS internal_ms,
            CASE WHEN p.transport = 'import' THEN p.is_error
                 ELSE p.has_hit AND coalesce(p.h_error, FALSE) END AS is_error,
            p.input_chars,
            CASE WHEN p.transport = 'import' THEN p.result_chars
                 WHEN p.has_hit THEN p.h_chars END AS result_chars,
            i.input
        FROM paired p LEFT JOIN s_inputs i ON i.hash = p.input_hash""")
    con.execute("ALTER TABLE rounds_base DROP COLUMN round_pk")
    con.execute("ALTER TABLE rounds_base DROP COLUMN session_pk")
    con.execute("ALTER TABLE rounds_base DROP COLUMN transport")
    for table in ("s_rounds", "s_events", "s_tools", "s_inputs", "s_extras"):
        con.execute(f"DROP TABLE {table}")
