"""Small hand-made TraceLab rows with easy numbers for exporter tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tracetap.tracelab import format_ts

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"
T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z


def ts(seconds: float) -> str:
    return format_ts(T0 + seconds)


def row(
    session: str,
    index: int,
    *,
    at: float,
    end: float,
    total: int,
    prefix: int,
    output: int,
    tools: list[tuple[str, float, float | None]] = (),
    user: bool = False,
    provider: str = "claude",
    **extra: Any,
) -> dict[str, Any]:
    """A round whose request arrives at `at` s and whose last output is at `end` s; each tool
    is (name, emitted s, result s or None)."""
    rid = f"msg_{session[-2:]}{index:04d}"
    events: list[dict[str, Any]] = []
    if user:
        events.append(
            {
                "event_type": "user_message",
                "timestamp": ts(at),
                "source": "user.message",
                "content_chars": 10,
            }
        )
    else:
        events.append(
            {
                "event_type": "tool_result",
                "timestamp": ts(at),
                "source": "user.content.tool_result",
                "tool_call_id": f"toolu_p{index}",
                "result_chars": 5,
                "is_error": False,
            }
        )
    tool_rows = []
    for i, (name, emitted, result) in enumerate(tools):
        cid = f"toolu_{session[-2:]}{index}{i}"
        events.append(
            {
                "event_type": "tool_call",
                "timestamp": ts(emitted),
                "source": "assistant.content.tool_use",
                "tool_call_id": cid,
                "tool_name": name,
                "tool_index": i,
            }
        )
        tool_rows.append(
            {
                "tool_index": i,
                "tool_name": name,
                "tool_call_id": cid,
                "emitted_at": ts(emitted),
                "result_at": ts(result) if result is not None else None,
                "input": '{"command": "secret-command --token abc"}',
                "input_chars": 40,
                "result_chars": 7,
                "tool_wall_latency_ms": None
                if result is None
                else round((result - emitted) * 1000),
                "tool_internal_latency_ms": None,
                "is_error": False,
            }
        )
    events.append(
        {
            "event_type": "text",
            "timestamp": ts(end),
            "source": "assistant.content.text",
            "content_chars": 3,
        }
    )
    events.sort(key=lambda e: e["timestamp"])
    sid = f"{provider}:{session}"
    out = {
        "provider": provider,
        "project": "proj",
        "session_id": sid,
        "round_index": index,
        "round_id": rid,
        "model": "claude-test",
        "input_tokens_total": total,
        "prefix_tokens": prefix,
        "newly_append_tokens": total - prefix,
        "claude_uncached_input_tokens": total - prefix,
        "claude_cache_creation_input_tokens": 0,
        "claude_cache_read_input_tokens": prefix,
        "output_tokens": output,
        "reasoning_output_tokens": None,
        "timing_events": events,
        "tools": tool_rows,
        "current_input_event_count": 1,
        "current_user_message_count": int(user),
        "current_tool_result_count": int(not user),
        "current_user_message_chars": 10 * user,
        "current_tool_result_chars": 5 * (not user),
        "current_input_chars": 10 if user else 5,
        "first_input_event_type": "user_message" if user else "tool_result",
        "store": "tracetap",
        "trace_key": f"{provider}:{sid}:{rid}",
    }
    out.update(extra)
    return out


def two_sessions() -> list[dict[str, Any]]:
    """Session s1 starts at 0 s (3 rounds), session s2 at 2.5 s (2 rounds)."""
    return [
        row(
            "s1",
            0,
            at=0.0,
            end=1.0,
            total=1000,
            prefix=0,
            output=100,
            user=True,
            tools=[("Bash", 0.8, 1.5), ("Read", 1.0, 1.2)],
        ),
        row(
            "s1", 1, at=1.5, end=3.0, total=1300, prefix=1000, output=50, tools=[("Edit", 2.9, 4.0)]
        ),
        row("s1", 2, at=10.0, end=11.0, total=1400, prefix=1300, output=20, user=True),
        row(
            "s2",
            0,
            at=2.5,
            end=3.5,
            total=600,
            prefix=0,
            output=10,
            user=True,
            tools=[("Grep", 3.4, None)],
        ),
        row("s2", 1, at=5.0, end=6.0, total=700, prefix=600, output=10),
    ]
