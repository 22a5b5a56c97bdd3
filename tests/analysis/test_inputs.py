"""The three input kinds give the same numbers: TraceLab JSONL(.gz), TraceLab DuckDB, store URL."""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from tracetap.analysis import InputError, load, public, run
from tracetap.tracelab import parse_ts, read_rows

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"
SCALARS = [
    "provider",
    "project",
    "session_id",
    "round_index",
    "round_id",
    "turn_id",
    "model",
    "input_tokens_total",
    "prefix_tokens",
    "newly_append_tokens",
    "claude_uncached_input_tokens",
    "claude_cache_creation_input_tokens",
    "claude_cache_read_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "current_input_event_count",
    "current_user_message_count",
    "current_tool_result_count",
    "current_user_message_chars",
    "current_tool_result_chars",
    "current_input_chars",
    "first_input_event_type",
    "store",
    "trace_key",
]


def _naive(ts):
    return None if ts is None else datetime.fromtimestamp(parse_ts(ts), UTC).replace(tzinfo=None)


def _tracelab_duckdb(path: Path) -> None:
    """The contract's DuckDB layout, built the way TraceLab's loader lays it out."""
    con = duckdb.connect(str(path))
    ints = ("_tokens", "_total", "_count", "_chars", "index")
    cols = ", ".join(f"{c} {'BIGINT' if c.endswith(ints) else 'VARCHAR'}" for c in SCALARS)
    con.execute(
        f"CREATE TABLE rounds (round_pk BIGINT, ingest_seq BIGINT, {cols}, "
        'home VARCHAR, "user" VARCHAR, session_file VARCHAR)'
    )
    con.execute(
        "CREATE TABLE tool_calls (round_pk BIGINT, tool_index BIGINT, tool_name VARCHAR, "
        "tool_call_id VARCHAR, emitted_at TIMESTAMP, result_at TIMESTAMP, "
        "tool_wall_latency_ms BIGINT, tool_internal_latency_ms BIGINT, is_error BOOLEAN, "
        "input_chars BIGINT, result_chars BIGINT)"
    )
    con.execute(
        "CREATE TABLE timing_events (round_pk BIGINT, event_index BIGINT, "
        'event_type VARCHAR, source VARCHAR, "timestamp" TIMESTAMP, '
        "tool_call_id VARCHAR, "
        "tool_index BIGINT, tool_name VARCHAR, is_error BOOLEAN, result_chars BIGINT, "
        "content_chars BIGINT)"
    )
    con.execute("CREATE TABLE trace_source (path VARCHAR)")
    con.execute("INSERT INTO trace_source VALUES (?)", [str(FIXTURE)])
    for pk, row in enumerate(read_rows(FIXTURE)):
        con.execute(
            f"INSERT INTO rounds VALUES ({', '.join('?' * (len(SCALARS) + 5))})",
            [pk, pk, *[row.get(c) for c in SCALARS], None, None, None],
        )
        for t in row["tools"]:
            con.execute(
                "INSERT INTO tool_calls VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    pk,
                    t["tool_index"],
                    t["tool_name"],
                    t["tool_call_id"],
                    _naive(t["emitted_at"]),
                    _naive(t.get("result_at")),
                    t["tool_wall_latency_ms"],
                    t["tool_internal_latency_ms"],
                    t.get("is_error"),
                    t["input_chars"],
                    t["result_chars"],
                ],
            )
        for i, e in enumerate(row["timing_events"], 1):
            con.execute(
                "INSERT INTO timing_events VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    pk,
                    i,
                    e["event_type"],
                    e["source"],
                    _naive(e["timestamp"]),
                    e.get("tool_call_id"),
                    e.get("tool_index"),
                    e.get("tool_name"),
                    e.get("is_error"),
                    e.get("result_chars"),
                    e.get("content_chars"),
                ],
            )
    con.close()


NAMES = ["overview", "tokens", "growth", "timing", "tools", "kv_timeout"]


@pytest.fixture(scope="module")
def reference():
    return public(run(load(str(FIXTURE)), NAMES))


def test_gzip_jsonl_equals_plain(tmp_path, reference):
    gz = tmp_path / "s.jsonl.gz"
    with open(FIXTURE, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert public(run(load(str(gz)), NAMES)) == reference


def test_tracelab_duckdb_equals_jsonl(tmp_path, reference):
    db = tmp_path / "trace.duckdb"
    _tracelab_duckdb(db)
    got = public(run(load(str(db)), NAMES))
    assert _close(got, reference)


def _close(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert len(a) == len(b)
        return all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-6)
        return True
    assert a == b
    return True


def test_real_sqlite_store_round_trip(tmp_path):
    from tracetap.importers.tracelab import import_rows

    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert import_rows(url, read_rows(FIXTURE), source="tracelab") == 19
    res = public(run(load(url), ["overview", "tokens"]))
    assert res["overview"]["all"]["llm_rounds_total"] == 19
    assert res["tokens"]["all"]["prefix_hit_rate"] == pytest.approx(473556 / 514012)


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load(str(tmp_path / "nope.jsonl"))
    other = tmp_path / "x.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE t (a INT)").close()
    with pytest.raises(InputError, match="not a TraceLab DuckDB"):
        load(str(other))
    with pytest.raises(InputError, match="unknown group"):
        load(str(FIXTURE), group_by="colour")
