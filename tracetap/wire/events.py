"""The stream event types each API documents, and the ones a response used beyond them.

An event of a type not listed here is kept raw in the round's response (`UNKNOWN_KEY`) and
counted by the proxy's /metrics, so a new client or API version never loses data silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tracetap.model import StreamEvent

__all__ = ["KNOWN_EVENTS", "UNKNOWN_KEY", "keep_unknown", "unknown_types"]

UNKNOWN_KEY = "_unknown_events"

_RESPONSES_ITEMS = (
    "output_item",
    "content_part",
    "output_text",
    "output_text.annotation",
    "refusal",
    "function_call_arguments",
    "custom_tool_call_input",
    "reasoning_summary_part",
    "reasoning_summary_text",
    "reasoning_text",
    "file_search_call",
    "web_search_call",
    "code_interpreter_call",
    "code_interpreter_call_code",
    "image_generation_call",
    "mcp_call",
    "mcp_call_arguments",
    "mcp_list_tools",
    "audio",
    "audio.transcript",
)
_RESPONSES_PHASES = (
    "added",
    "done",
    "delta",
    "in_progress",
    "searching",
    "completed",
    "failed",
    "interpreting",
    "generating",
    "partial_image",
)

KNOWN_EVENTS: dict[str, frozenset[str]] = {
    "anthropic_messages": frozenset(
        {
            "message_start",
            "message_delta",
            "message_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "ping",
            "error",
        }
    ),
    "openai_responses": frozenset(
        {
            "response.created",
            "response.in_progress",
            "response.queued",
            "response.completed",
            "response.incomplete",
            "response.failed",
            "error",
            "keepalive",
        }
        | {f"response.{item}.{phase}" for item in _RESPONSES_ITEMS for phase in _RESPONSES_PHASES}
    ),
}


def unknown_types(api: str, names: Iterable[str]) -> list[str]:
    """The names (in order, repeats kept) that `api` does not document; none for an API
    whose events carry no type (Chat Completions)."""
    known = KNOWN_EVENTS.get(api)
    return [] if known is None else [n for n in names if n not in known]


def keep_unknown(
    response: dict[str, Any], api: str, events: list[StreamEvent], datas: list[Any]
) -> None:
    """Add the stream's events of undocumented types to `response`, raw, under UNKNOWN_KEY."""
    known = KNOWN_EVENTS.get(api)
    if known is None:
        return
    kept = []
    for ev, data in zip(events, datas):
        kind = data.get("type") if isinstance(data, dict) else None
        kind = kind if isinstance(kind, str) else ev.name
        if kind not in known:
            kept.append({"type": kind, "at": ev.at, "data": ev.data})
    if kept:
        response[UNKNOWN_KEY] = kept
