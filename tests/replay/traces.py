"""Small hand-made traces for replay tests: TraceLab rows with known token shapes and gaps."""

from __future__ import annotations

from typing import Any

from tracetap.tracelab import format_ts

__all__ = ["T0", "row", "session_rows"]

T0 = 1_780_000_000.0


def row(
    session: str,
    index: int,
    *,
    at: float,
    end: float,
    prefix: int,
    append: int,
    output: int,
    tools: list[tuple[int, int | None]] = (),
    hashes: list[str] | None = None,
    block_size: int = 16,
) -> dict[str, Any]:
    """One round: input event at T0+at, last output at T0+end; tools as (wall_ms, internal_ms)."""
    events = [
        {
            "event_type": "user_message" if index == 0 else "tool_result",
            "timestamp": format_ts(T0 + at),
            "source": "test",
        },
        {"event_type": "text", "timestamp": format_ts(T0 + end), "source": "test"},
    ]
    out: dict[str, Any] = {
        "provider": "claude",
        "project": "p",
        "session_id": session,
        "round_index": index,
        "round_id": f"msg_{index}",
        "model": "m",
        "input_tokens_total": prefix + append,
        "prefix_tokens": prefix,
        "newly_append_tokens": append,
        "output_tokens": output,
        "timing_events": events,
        "tools": [
            {"tool_index": i, "tool_wall_latency_ms": w, "tool_internal_latency_ms": n}
            for i, (w, n) in enumerate(tools)
        ],
    }
    if hashes is not None:
        out["tt_block_hashes"], out["tt_block_size"] = hashes, block_size
    return out


def session_rows(
    session: str,
    start: float,
    shapes: list[tuple[int, int, int]],
    gap: float = 1.0,
    gen: float = 0.5,
) -> list[dict[str, Any]]:
    """Rounds (prefix, append, output) spaced `gen` s of generation then `gap` s of waiting."""
    rows, t = [], start
    for i, (p, a, o) in enumerate(shapes):
        rows.append(row(session, i, at=t, end=t + gen, prefix=p, append=a, output=o))
        t += gen + gap
    return rows
