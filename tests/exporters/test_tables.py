"""tracelab-duckdb and parquet: read back by duckdb and pyarrow with the contract's types."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow.dataset as ds

from tests.exporters.handmade import FIXTURE, two_sessions
from tracetap.exporters import duckdb_file, parquet
from tracetap.tracelab import read_rows

ROUND_TYPES = {
    "round_pk": "BIGINT",
    "ingest_seq": "BIGINT",
    "provider": "VARCHAR",
    "session_id": "VARCHAR",
    "session_file": "VARCHAR",
    "home": "VARCHAR",
    "user": "VARCHAR",
    "round_index": "BIGINT",
    "input_tokens_total": "BIGINT",
    "reasoning_output_tokens": "BIGINT",
    "current_input_chars": "BIGINT",
    "first_input_event_type": "VARCHAR",
    "trace_key": "VARCHAR",
}
TOOL_TYPES = {
    "round_pk": "BIGINT",
    "tool_index": "BIGINT",
    "tool_name": "VARCHAR",
    "tool_call_id": "VARCHAR",
    "emitted_at": "TIMESTAMP",
    "result_at": "TIMESTAMP",
    "tool_wall_latency_ms": "BIGINT",
    "tool_internal_latency_ms": "BIGINT",
    "is_error": "BOOLEAN",
    "input_chars": "BIGINT",
    "result_chars": "BIGINT",
}
EVENT_TYPES = {
    "round_pk": "BIGINT",
    "event_index": "BIGINT",
    "event_type": "VARCHAR",
    "source": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "tool_call_id": "VARCHAR",
    "tool_index": "BIGINT",
    "tool_name": "VARCHAR",
    "is_error": "BOOLEAN",
    "result_chars": "BIGINT",
    "content_chars": "BIGINT",
}


def _types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return {name: typ for name, typ, *_ in con.execute(f"DESCRIBE {table}").fetchall()}


def test_duckdb_file_has_tracelab_tables_and_types(tmp_path: Path) -> None:
    out = tmp_path / "t.duckdb"
    assert duckdb_file.export(read_rows(FIXTURE), out, source_path=str(FIXTURE), batch_rows=7) == 19
    con = duckdb.connect(str(out), read_only=True)
    rounds = _types(con, "rounds")
    assert {k: rounds[k] for k in ROUND_TYPES} == ROUND_TYPES
    assert "input" not in _types(con, "tool_calls")
    assert _types(con, "tool_calls") == TOOL_TYPES
    assert _types(con, "timing_events") == EVENT_TYPES
    assert con.execute("SELECT path FROM trace_source").fetchall() == [(str(FIXTURE),)]
    rows = list(read_rows(FIXTURE))
    assert con.execute(
        "SELECT list(round_pk ORDER BY round_pk), list(ingest_seq ORDER BY round_pk) FROM rounds"
    ).fetchone() == (list(range(19)), list(range(19)))
    assert con.execute("SELECT count(*) FROM tool_calls").fetchone()[0] == sum(
        len(r["tools"]) for r in rows
    )
    # first row's first tool: Bash, 860 ms, timestamps naive UTC with milliseconds kept
    assert con.execute(
        "SELECT tool_name, tool_wall_latency_ms, emitted_at FROM tool_calls "
        "WHERE round_pk = 0 AND tool_index = 0"
    ).fetchone() == ("Bash", 860, datetime(2026, 6, 1, 5, 40, 30, 836000))
    assert con.execute(
        "SELECT event_index, event_type, content_chars FROM timing_events "
        "WHERE round_pk = 0 ORDER BY event_index LIMIT 1"
    ).fetchone() == (1, "user_message", 146)
    assert con.execute("SELECT sum(input_tokens_total) FROM rounds").fetchone()[0] == sum(
        r["input_tokens_total"] for r in rows
    )


def test_all_null_reasoning_stays_bigint(tmp_path: Path) -> None:
    out = tmp_path / "t.duckdb"
    duckdb_file.export(two_sessions(), out)
    con = duckdb.connect(str(out), read_only=True)
    assert _types(con, "rounds")["reasoning_output_tokens"] == "BIGINT"
    assert con.execute("SELECT count(*) FROM tool_calls WHERE result_at IS NULL").fetchone() == (1,)


def test_parquet_partitions_by_day_and_reads_back(tmp_path: Path) -> None:
    assert parquet.export(read_rows(FIXTURE), tmp_path, batch_rows=5) == 19
    days = sorted(p.name for p in (tmp_path / "rounds").iterdir())
    assert days == ["day=2026-03-21", "day=2026-06-01"]
    rounds = ds.dataset(tmp_path / "rounds", format="parquet", partitioning="hive").to_table()
    tools = ds.dataset(tmp_path / "tool_calls", format="parquet", partitioning="hive").to_table()
    events = ds.dataset(
        tmp_path / "timing_events", format="parquet", partitioning="hive"
    ).to_table()
    rows = list(read_rows(FIXTURE))
    assert rounds.num_rows == 19
    assert tools.num_rows == sum(len(r["tools"]) for r in rows)
    assert events.num_rows == sum(len(r["timing_events"]) for r in rows)
    assert str(tools.schema.field("emitted_at").type) == "timestamp[us]"
    by_provider = {
        p: d
        for p, d in zip(rounds.column("provider").to_pylist(), rounds.column("day").to_pylist())
    }
    assert by_provider == {"codex": "2026-03-21", "claude": "2026-06-01"}
    con = duckdb.connect()
    con.register("r", rounds)
    con.register("t", tools)
    assert (
        con.execute("SELECT count(*) FROM t JOIN r USING (round_pk)").fetchone()[0]
        == tools.num_rows
    )
