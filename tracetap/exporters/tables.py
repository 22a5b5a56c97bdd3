"""TraceLab rows -> the three flat tables TraceLab's scripts query (rounds, tool_calls,
timing_events) as Arrow record batches with the contract's exact column types, in chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from tracetap.tracelab import parse_ts

__all__ = ["ROUND_SCHEMA", "TIMING_SCHEMA", "TOOL_SCHEMA", "TableBatch", "table_batches"]

_TS = pa.timestamp("us")
_STR_ROUND = ("provider", "project", "session_id", "round_id", "turn_id", "model")
_INT_ROUND = (
    "round_index",
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
)

ROUND_SCHEMA = pa.schema(
    [
        ("round_pk", pa.int64()),
        ("ingest_seq", pa.int64()),
        ("provider", pa.string()),
        ("project", pa.string()),
        ("session_id", pa.string()),
        ("session_file", pa.string()),
        ("round_index", pa.int64()),
        ("round_id", pa.string()),
        ("turn_id", pa.string()),
        ("model", pa.string()),
    ]
    + [(k, pa.int64()) for k in _INT_ROUND if k != "round_index"]
    + [
        ("first_input_event_type", pa.string()),
        ("home", pa.string()),
        ("user", pa.string()),
        ("store", pa.string()),
        ("trace_key", pa.string()),
    ]
)
TOOL_SCHEMA = pa.schema(
    [
        ("round_pk", pa.int64()),
        ("tool_index", pa.int64()),
        ("tool_name", pa.string()),
        ("tool_call_id", pa.string()),
        ("emitted_at", _TS),
        ("result_at", _TS),
        ("tool_wall_latency_ms", pa.int64()),
        ("tool_internal_latency_ms", pa.int64()),
        ("is_error", pa.bool_()),
        ("input_chars", pa.int64()),
        ("result_chars", pa.int64()),
    ]
)
TIMING_SCHEMA = pa.schema(
    [
        ("round_pk", pa.int64()),
        ("event_index", pa.int64()),
        ("event_type", pa.string()),
        ("source", pa.string()),
        ("timestamp", _TS),
        ("tool_call_id", pa.string()),
        ("tool_index", pa.int64()),
        ("tool_name", pa.string()),
        ("is_error", pa.bool_()),
        ("result_chars", pa.int64()),
        ("content_chars", pa.int64()),
    ]
)

TableBatch = tuple[pa.RecordBatch, pa.RecordBatch, pa.RecordBatch]


def _naive(value: str | None) -> datetime | None:
    """ISO-8601 UTC text -> naive UTC datetime (microseconds), as TraceLab stores it."""
    t = parse_ts(value)
    return None if t is None else datetime.fromtimestamp(t, UTC).replace(tzinfo=None)


def _int(v: Any) -> int | None:
    return None if v is None or v == "" else int(v)


def _columns(schema: pa.Schema) -> dict[str, list[Any]]:
    return {name: [] for name in schema.names}


def _batch(cols: dict[str, list[Any]], schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(cols[f.name], type=f.type) for f in schema], schema=schema
    )


def table_batches(
    rows: Iterable[dict[str, Any]], *, batch_rows: int = 20_000, start_seq: int = 0
) -> Iterator[TableBatch]:
    """Yield (rounds, tool_calls, timing_events) batches of at most `batch_rows` rounds.

    round_pk equals ingest_seq (0-based file order); timing event_index is 1-based.
    """
    seq = start_seq
    rows = iter(rows)
    while True:
        r, t, e = _columns(ROUND_SCHEMA), _columns(TOOL_SCHEMA), _columns(TIMING_SCHEMA)
        n = 0
        for row in rows:
            r["round_pk"].append(seq)
            r["ingest_seq"].append(seq)
            for k in _STR_ROUND:
                v = row.get(k)
                r[k].append(None if v is None else str(v))
            for k in _INT_ROUND:
                r[k].append(_int(row.get(k)))
            for k in (
                "first_input_event_type",
                "store",
                "trace_key",
                "home",
                "user",
                "session_file",
            ):
                v = row.get(k)
                r[k].append(None if v is None else str(v))
            for tool in row.get("tools") or []:
                t["round_pk"].append(seq)
                t["tool_index"].append(_int(tool.get("tool_index")))
                t["tool_name"].append(tool.get("tool_name"))
                t["tool_call_id"].append(tool.get("tool_call_id"))
                t["emitted_at"].append(_naive(tool.get("emitted_at")))
                t["result_at"].append(_naive(tool.get("result_at")))
                for k in (
                    "tool_wall_latency_ms",
                    "tool_internal_latency_ms",
                    "input_chars",
                    "result_chars",
                ):
                    t[k].append(_int(tool.get(k)))
                t["is_error"].append(tool.get("is_error"))
            for i, ev in enumerate(row.get("timing_events") or [], start=1):
                e["round_pk"].append(seq)
                e["event_index"].append(i)
                e["event_type"].append(ev.get("event_type"))
                e["source"].append(ev.get("source"))
                e["timestamp"].append(_naive(ev.get("timestamp")))
                e["tool_call_id"].append(ev.get("tool_call_id"))
                e["tool_index"].append(_int(ev.get("tool_index")))
                e["tool_name"].append(ev.get("tool_name"))
                e["is_error"].append(ev.get("is_error"))
                e["result_chars"].append(_int(ev.get("result_chars")))
                e["content_chars"].append(_int(ev.get("content_chars")))
            seq += 1
            n += 1
            if n >= batch_rows:
                break
        if n == 0:
            return
        yield (_batch(r, ROUND_SCHEMA), _batch(t, TOOL_SCHEMA), _batch(e, TIMING_SCHEMA))
        if n < batch_rows:
            return
