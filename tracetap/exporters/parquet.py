"""`parquet`: the three TraceLab tables as Parquet files partitioned by day
(`<dir>/<table>/day=YYYY-MM-DD/part-N.parquet`), written batch by batch with pyarrow.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tracetap.exporters.tables import table_batches

__all__ = ["export"]

_TABLES = ("rounds", "tool_calls", "timing_events")


def _round_days(events: pa.RecordBatch, n_first: int, n_rounds: int) -> list[str]:
    """Day of each round = day of its first timing event ('unknown' when it has none)."""
    days = ["unknown"] * n_rounds
    pks = events.column("round_pk").to_pylist()
    stamps = pc.strftime(events.column("timestamp"), format="%Y-%m-%d").to_pylist()
    for pk, day in zip(pks, stamps):
        i = pk - n_first
        if day is not None and days[i] == "unknown":
            days[i] = day
    return days


def export(rows: Iterable[dict[str, Any]], out_dir: str | Path, *, batch_rows: int = 20_000) -> int:
    """Write `out_dir/{rounds,tool_calls,timing_events}/day=.../part-K.parquet`; returns rounds.

    A round and its tool calls and events go to the day of the round's first event, so the
    three tables partition alike and join within one day.
    """
    out_dir = Path(out_dir)
    n = 0
    for part, (rounds, tools, events) in enumerate(table_batches(rows, batch_rows=batch_rows)):
        first = rounds.column("round_pk")[0].as_py()
        days = _round_days(events, first, rounds.num_rows)
        for name, batch in zip(_TABLES, (rounds, tools, events)):
            pks = batch.column("round_pk").to_pylist()
            row_days = pa.array([days[pk - first] for pk in pks], type=pa.string())
            table = pa.Table.from_batches([batch])
            for day in sorted(set(row_days.to_pylist())):
                chunk = table.filter(pc.equal(row_days, day))
                target = out_dir / name / f"day={day}"
                target.mkdir(parents=True, exist_ok=True)
                pq.write_table(chunk, target / f"part-{part:05d}.parquet")
        n += rounds.num_rows
    return n
