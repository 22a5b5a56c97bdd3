"""`replay-csv`: TraceLab's session-runner CSV (one line per round) with arrivals and waits
from the recorded sessions, or TraceLab's tool-only wait convention.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tracetap.exporters.mooncake import request_time
from tracetap.tracelab import parse_ts

__all__ = ["HEADER", "WAITS", "by_session", "export"]

HEADER = (
    "session_id",
    "arrival_time",
    "round_idx",
    "prefix_len",
    "input_len",
    "output_len",
    "tool_wait_after_ms",
)
WAITS = ("recorded", "tool-only")
_OUTPUT_EVENTS = ("reasoning", "text", "tool_call", "usage_report")


def _end_time(row: dict[str, Any]) -> float | None:
    """End of the round's response: its last model output event (else its request time)."""
    parsed = [
        parse_ts(e.get("timestamp"))
        for e in row.get("timing_events") or []
        if e.get("event_type") in _OUTPUT_EVENTS
    ]
    stamps = [s for s in parsed if s is not None]
    return max(stamps) if stamps else request_time(row)


def _tool_wait(row: dict[str, Any]) -> int:
    return sum(int(t.get("tool_wall_latency_ms") or 0) for t in row.get("tools") or [])


def by_session(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    current: list[dict[str, Any]] = []
    for row in rows:
        if current and row.get("session_id") != current[0].get("session_id"):
            yield current
            current = []
        current.append(row)
    if current:
        yield current


def export(rows: Iterable[dict[str, Any]], out: IO[str], *, waits: str = "recorded") -> int:
    """Write the CSV; returns the number of rounds written.

    arrival_time: ms from the first session's start to this session's first request (every
    round of a session carries its session's arrival). waits="recorded": end of this round's
    response to the next round's request (tool execution plus any human wait; 0 after the
    last round). waits="tool-only": the sum of the round's tool wall latencies (TraceLab's).
    Sessions are held one at a time; the lines are sorted by arrival at the end (small).
    """
    if waits not in WAITS:
        raise ValueError(f"waits must be one of {', '.join(WAITS)}")
    lines: list[tuple[float, int, str, int, int, int, int, int]] = []
    for session in by_session(rows):
        times = [request_time(r) for r in session]
        known = [t for t in times if t is not None]
        start = min(known) if known else 0.0
        for i, row in enumerate(session):
            if waits == "tool-only":
                wait = _tool_wait(row)
            elif i + 1 < len(session):
                end, nxt = _end_time(row), times[i + 1]
                wait = max(0, round((nxt - end) * 1000)) if end and nxt else 0
            else:
                wait = 0
            lines.append(
                (
                    start,
                    len(lines),
                    str(row.get("session_id")),
                    i,
                    int(row.get("prefix_tokens") or 0),
                    int(row.get("newly_append_tokens") or 0),
                    int(row.get("output_tokens") or 0),
                    wait,
                )
            )
    lines.sort(key=lambda x: (x[0], x[1]))
    t0 = lines[0][0] if lines else 0.0
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for start, _, sid, *values in lines:
        writer.writerow([sid, round((start - t0) * 1000), *values])
    return len(lines)
